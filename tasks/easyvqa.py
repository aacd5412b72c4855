"""easy-VQA (the PyPI package ``easy-vqa``, MIT): 64x64 images of one coloured shape, questions about
its shape and colour. Test split: 1,000 images, 9,673 questions, 13 answers, one answer per question.
Metric: exact match after VQA answer normalisation (punctuation, number words, articles, lower case),
broken down by answer type (yes/no, shape, color). The embedded default task: real data, offline."""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi import Aggregate, GenerationSettings, MetricInfo, Option, Output, Sample, Task
from mmgpt_eval.taskapi.breakdowns import accuracy_by, accuracy_by_view
from mmgpt_eval.taskapi.datasets import load_easyvqa_split
from mmgpt_eval.taskapi.metrics import exact_match


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
    view = accuracy_by_view()

    def load(self) -> list[Sample]:
        return load_easyvqa_split(self.option("split"))

    def fewshot_pool(self) -> list[Sample]:
        return load_easyvqa_split("train")

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def metric_info(self) -> dict[str, MetricInfo]:
        return {
            "accuracy": MetricInfo(
                kind="binary",
                scale=100.0,
                unit="%",
                per_sample="exact",
                description="exact match after VQA answer normalisation",
            )
        }

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {"exact": exact_match(outputs["main"].prediction, sample.references[0])}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        return accuracy_by(samples, records, "exact", "answer_type")


TASK = EasyVQA
