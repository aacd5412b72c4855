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

from typing import Any, Mapping

from mmgpt_eval.taskapi import (
    DataFile,
    JudgedItem,
    Judging,
    Sample,
)
from mmgpt_eval.taskapi.openended import OpenEndedTask, max_new_tokens_option
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


class MMVet(OpenEndedTask):
    name = "mmvet"
    aliases = ("mm-vet",)
    description = "MM-Vet: open-ended answers graded 0-1 against the ground truth by a model, per capability"
    GROUP_COUNT_KEY = "n_by_capability"
    OPTIONS = (
        DataFile("json", "mm-vet.json", layout="mmvet/mm-vet.json", source=f"{SOURCE} (mm-vet/mm-vet.json)"),
        DataFile(
            "images",
            "image folder",
            layout="mmvet/images",
            source=f"{SOURCE} (mm-vet/images/, so that mmvet/images/v1_0.png exists)",
        ),
        max_new_tokens_option(256),
    )
    JUDGING = Judging(
        modes=("grade",),
        item=judged_item,
        description="each answer graded 0.0-1.0 for correctness against the ground truth (MM-Vet's grading)",
    )

    def load(self) -> list[Sample]:
        return load_mmvet(self.path("json"), self.path("images"), HINT)

    def sample_groups(self, sample: Sample) -> list[str]:
        return sample.meta["capabilities"]


TASK = MMVet
