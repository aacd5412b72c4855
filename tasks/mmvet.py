"""MM-Vet: 218 questions that each need one or more of six capabilities (recognition, OCR, knowledge,
language generation, spatial awareness, math), in the files its authors publish: ``mm-vet.json``
(one object keyed by question id -- ``v1_0`` ... -- each with ``imagename``, ``question``, ``answer``
and the ``capability`` list) and ``images/``. Sample ids are the question ids.

Answers are generated open-ended with the MultiModal-GPT template. Their correctness is graded by a
model (``mmgpt-eval judge``, mode ``grade``): 0.0-1.0 against the ground truth, as MM-Vet scores it.
Each item's group is its capability set joined with commas in sorted order (``ocr,math`` is written
``math,ocr``); a per-capability score counts an item toward each capability in its group. The task's
own metrics describe the answers only: their length and the share of empty ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from mmgpt_eval.taskapi import (
    Aggregate,
    DataFile,
    GenerationSettings,
    JudgedItem,
    Judging,
    MetricInfo,
    Option,
    Output,
    Sample,
    Task,
    Template,
)
from mmgpt_eval.taskapi.datasets import load_mmvet

SOURCE = "https://github.com/yuweihao/MM-Vet (releases: mm-vet.zip)"
HINT = "`mmgpt-eval data check --tasks mmvet` lists what is missing and where to get it"


def judged_item(record: Mapping[str, Any]) -> JudgedItem:
    """The judge's view of one per-sample log record: the question, the answer, the ground truth, the
    image's content sha256 (MM-Vet has no captions), the capability set as the group."""
    meta = record["meta"]
    return JudgedItem(
        id=str(record["id"]),
        turns=((meta["question"], record["prediction"]),),
        image=None,
        image_id=meta["image_sha256"],
        reference=record["references"][0],
        group=",".join(meta["capabilities"]),
    )


class MMVet(Task):
    name = "mmvet"
    aliases = ("mm-vet",)
    description = "MM-Vet: open-ended answers graded 0-1 against the ground truth by a model, per capability"
    templates = ("mmgpt",)
    default_template = "mmgpt"
    primary_metric = "answer_words"
    OPTIONS = (
        DataFile("json", "mm-vet.json", layout="mmvet/mm-vet.json", source=f"{SOURCE} (mm-vet/mm-vet.json)"),
        DataFile(
            "images",
            "image folder",
            layout="mmvet/images",
            source=f"{SOURCE} (mm-vet/images/, so that mmvet/images/v1_0.png exists)",
        ),
        Option("max_new_tokens", "generation budget per answer (default 256)", type=int, default=256),
    )
    JUDGING = Judging(
        modes=("grade",),
        item=judged_item,
        description="each answer graded 0.0-1.0 for correctness against the ground truth (MM-Vet's grading)",
    )

    def load(self) -> list[Sample]:
        return load_mmvet(self.path("json"), self.path("images"), HINT)

    def generation_settings(self, template: Template) -> GenerationSettings:
        base = self.GENERATION.get(template.name, template.settings)
        return replace(base, max_new_tokens=self.option("max_new_tokens"))

    def metric_info(self) -> dict[str, MetricInfo]:
        return {
            "answer_words": MetricInfo(
                "continuous", True, 1.0, " words", "words", "mean answer length in words (quality: `mmgpt-eval judge`)"
            ),
            "empty_rate": MetricInfo("binary", False, 100.0, "%", "empty", "share of empty answers"),
        }

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        words = len(outputs["main"].prediction.split())
        return {"words": float(words), "empty": float(words == 0)}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        agg = super().aggregate(samples, records)
        counts: dict[str, int] = {}
        for s in samples:
            for c in s.meta["capabilities"]:
                counts[c] = counts.get(c, 0) + 1
        agg.breakdown["n_by_capability"] = dict(sorted(counts.items()))
        return agg


TASK = MMVet
