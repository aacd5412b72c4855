"""easy-VQA as multiple choice: every question of the embedded easy-VQA test split (PyPI ``easy-vqa``)
answered by ranking its 13 answers by log-likelihood after the prompt (no generation). Metric:
top-1 accuracy (chance: 1/13 = 7.7%; answering within the question's type: 1/2 for yes/no, 1/3 for
shape, 1/8 for colour), broken down by answer type. Offline: shows ranking end to end on the
embedded default.

Templates: ``mmgpt`` (default; candidates tokenized as they read after ``### Response:``) and
``of-vqa`` (OpenFlamingo's VQA prompt; candidates tokenized alone, as OpenFlamingo's classification
does)."""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi import Aggregate, MetricInfo, Option, Output, Sample, Task
from mmgpt_eval.taskapi.breakdowns import accuracy_by, accuracy_by_view
from mmgpt_eval.taskapi.datasets import load_easyvqa_split

ANSWERS = (
    "yes",
    "no",
    "circle",
    "rectangle",
    "triangle",
    "black",
    "blue",
    "brown",
    "gray",
    "green",
    "red",
    "teal",
    "yellow",
)  # easy_vqa.get_answers(), in a fixed order (tests check they are the same set)


class EasyVQAMC(Task):
    openflamingo_template = "of-vqa"
    name = "easyvqa-mc"
    aliases = ("easyvqa_mc",)
    description = "easy-VQA test split as multiple choice: its 13 answers ranked by log-likelihood; offline"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"
    rank_top_k = 3
    view = accuracy_by_view()

    OPTIONS = (Option("split", "easy-VQA split to evaluate (default test)", choices=("test", "train"), default="test"),)

    def load(self) -> list[Sample]:
        return load_easyvqa_split(self.option("split"))

    def fewshot_pool(self) -> list[Sample]:
        return load_easyvqa_split("train")

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def candidates(self, sample: Sample) -> list[str]:
        return list(ANSWERS)

    def metric_info(self) -> dict[str, MetricInfo]:
        return {
            "accuracy": MetricInfo(
                kind="binary",
                scale=100.0,
                unit="%",
                per_sample="correct",
                description="top-1 of the 13 answers ranked by mean log-probability per token",
            )
        }

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        ranking: Any = outputs["main"]  # a Ranking (the Task API types outputs as Output)
        return {
            "correct": int(ranking.prediction == sample.references[0]),
            "rank": ranking.rank_of(sample.references[0]),
        }

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        agg = accuracy_by(samples, records, "correct", "answer_type")
        agg.breakdown["mean_rank"] = round(sum(r["metrics"]["rank"] for r in records) / len(records), 3)
        return agg


TASK = EasyVQAMC
