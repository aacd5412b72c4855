"""easy-VQA (the PyPI package ``easy-vqa``, MIT): 64x64 images of one coloured shape, questions about
its shape and colour. Test split: 1,000 images, 9,673 questions, 13 answers, one answer per question.
Metric: exact match after VQA answer normalisation (punctuation, number words, articles, lower case),
broken down by answer type (yes/no, shape, color). The embedded default task: real data, offline."""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi import Aggregate, GenerationSettings, MetricInfo, Option, Output, Sample, Task
from mmgpt_eval.taskapi.datasets import load_easyvqa_split
from mmgpt_eval.taskapi.metrics import normalize_openflamingo
from mmgpt_eval.taskapi.reporting import Column, ReportTables, dict_table


def exact_match(prediction: str, answer: str) -> int:
    return int(normalize_openflamingo(prediction) == normalize_openflamingo(answer))


class EasyVQA(Task):
    openflamingo_template = "of-vqa"
    name = "easyvqa"
    aliases = ("easy-vqa",)
    description = "easy-VQA test split (PyPI easy-vqa): 9,673 shape/colour questions, exact match; offline"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"

    OPTIONS = (Option("split", "easy-VQA split to evaluate (default test)", choices=("test", "train"), default="test"),)
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=10)}  # of-vqa: the template's (OpenFlamingo's)

    def load(self) -> list[Sample]:
        return load_easyvqa_split(self.option("split"))

    def fewshot_pool(self) -> list[Sample]:
        return load_easyvqa_split("train")

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def metric_info(self) -> dict[str, MetricInfo]:
        return {"accuracy": MetricInfo(kind="binary", scale=100.0, unit="%", per_sample="exact",
                                       description="exact match after VQA answer normalisation")}

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {"exact": exact_match(outputs["main"].prediction, sample.references[0])}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        by_type: dict[str, list[int]] = {}
        for s, r in zip(samples, records):
            by_type.setdefault(s.meta["answer_type"], []).append(r["metrics"]["exact"])
        all_ = [r["metrics"]["exact"] for r in records]
        return Aggregate(
            metrics={"accuracy": round(100 * sum(all_) / len(all_), 2)},
            breakdown={"accuracy_by_answer_type": {k: round(100 * sum(v) / len(v), 2) for k, v in sorted(by_type.items())},
                       "n_by_answer_type": {k: len(v) for k, v in sorted(by_type.items())}})

    def report_tables(self, columns: list[Column]) -> ReportTables:
        if not any("accuracy_by_answer_type" in c.breakdown for c in columns):
            return ReportTables()
        return ReportTables(
            tables=[dict_table("accuracy by answer type", columns,
                               [c.breakdown.get("accuracy_by_answer_type") for c in columns],
                               counts=[c.breakdown.get("n_by_answer_type") for c in columns], unit="%")],
            consumed={"accuracy_by_answer_type", "n_by_answer_type"})


TASK = EasyVQA
