"""shapeqa: a plain VQA-style task in one file, the example of README's "Writing a task".

Data: ``<data root>/shapeqa/questions.json`` -- ``[{"id", "image", "question", "answer"}]`` with image
paths relative to the file. Metric: exact match after VQA answer normalisation, and its breakdown
by answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgpt_eval.taskapi import (
    Aggregate,
    DataFile,
    GenerationSettings,
    ImageRef,
    MetricInfo,
    Output,
    Sample,
    Task,
    UserError,
)
from mmgpt_eval.taskapi.datasets import read_json
from mmgpt_eval.taskapi.metrics import normalize_openflamingo


class ShapeQA(Task):
    name = "shapeqa"
    description = "questions about shapes (README example task)"
    templates = ("mmgpt", "of-vqa")  # of-vqa brings OpenFlamingo's decoding with it
    primary_metric = "accuracy"
    OPTIONS = (
        DataFile(
            "questions",
            "questions JSON",
            layout="shapeqa/questions.json",
            source="made by the test that uses this task",
        ),
    )
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=8)}

    def load(self) -> list[Sample]:
        path = self.path("questions")
        rows = read_json(path)
        if not isinstance(rows, list):
            raise UserError("expected a JSON list of questions", path)
        return [
            Sample(
                id=str(r["id"]),
                images=[ImageRef.from_path(Path(path).parent / r["image"])],
                fields={"question": r["question"]},
                references=[r["answer"]],
            )
            for r in rows
        ]

    def fewshot_pool(self) -> list[Sample]:
        return self.load()  # a real task draws demos from its train split

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
        pred, ref = normalize_openflamingo(outputs["main"].prediction), normalize_openflamingo(sample.references[0])
        return {"exact": int(pred == ref)}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        agg = super().aggregate(samples, records)  # the mean of "exact", x100
        by_answer: dict[str, list[int]] = {}
        for s, r in zip(samples, records):
            by_answer.setdefault(s.references[0], []).append(r["metrics"]["exact"])
        agg.breakdown = {"accuracy_by_answer": {a: 100 * sum(v) / len(v) for a, v in sorted(by_answer.items())}}
        return agg


TASK = ShapeQA
