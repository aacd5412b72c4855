"""VQAv2-format tasks (``vqav2``, alias ``vqa``; ``okvqa``): official question + annotation JSON files and
an image folder. Accuracy is the official VQA metric (GT-Vision-Lab/VQA ``vqaEval.py``), or
OpenFlamingo's variant with ``--vqa-normalization openflamingo``; the mode is recorded in results.

Images are found in the folder by the trailing number of their file name (``COCO_val2014_000000000042.jpg``
or ``42.jpg`` both give image 42).
"""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi import Aggregate, Sample, UserError
from mmgpt_eval.taskapi.datasets import load_vqa_files
from mmgpt_eval.taskapi.metrics import score_vqa
from mmgpt_eval.taskapi.reporting import BreakdownTable, BreakdownTables
from mmgpt_eval.taskapi.vqa import VQATask, vqav2_format_options

COCO_VAL = "https://cocodataset.org/#download (2014 Val images, unzip to val2014/)"
COCO_TRAIN = "https://cocodataset.org/#download (2014 Train images, unzip to train2014/)"
VQA_SITE = "https://visualqa.org/download.html"
OKVQA_SITE = "https://okvqa.allenai.org/download.html"


class VQAv2(VQATask):
    name = "vqav2"
    aliases = ("vqa",)
    description = "VQAv2 (official question/annotation JSON + images), official VQA accuracy"
    OPTIONS = vqav2_format_options(
        "vqav2",
        {
            "questions": "v2_OpenEnded_mscoco_val2014_questions.json",
            "annotations": "v2_mscoco_val2014_annotations.json",
            "images": "val2014",
            "train_questions": "v2_OpenEnded_mscoco_train2014_questions.json",
            "train_annotations": "v2_mscoco_train2014_annotations.json",
            "train_images": "train2014",
        },
        {
            "questions": f"{VQA_SITE} (Validation questions 2017 v2.0)",
            "annotations": f"{VQA_SITE} (Validation annotations 2017 v2.0)",
            "images": COCO_VAL,
            "train_questions": f"{VQA_SITE} (Training questions 2017 v2.0)",
            "train_annotations": f"{VQA_SITE} (Training annotations 2017 v2.0)",
            "train_images": COCO_TRAIN,
        },
    )
    view = BreakdownTables(
        BreakdownTable("perAnswerType", "VQA accuracy per answer type"),
        BreakdownTable("perQuestionType", "VQA accuracy per question type"),
    )

    def load(self) -> list[Sample]:
        samples, self._questions, self._annotations = load_vqa_files(
            self.path("questions"), self.path("annotations"), self.path("images")
        )
        return samples

    def fewshot_pool(self) -> list[Sample]:
        q = self.path("train_questions", required=False)
        if q is None:
            raise UserError(f"few-shot on {self.name} needs --{self.name}-train-questions/-annotations/-images")
        return load_vqa_files(q, self.path("train_annotations"), self.path("train_images"))[0]

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        """The official scorer over the evaluated questions: accuracy per answer and question type too."""
        keep = {s.meta["question_id"] for s in samples}
        questions = [q for q in self._questions if q["question_id"] in keep]
        annotations = [a for a in self._annotations if a["question_id"] in keep]
        preds = [{"question_id": s.meta["question_id"], "answer": r["prediction"]} for s, r in zip(samples, records)]
        sc = score_vqa(questions, annotations, preds, self.mode)
        return Aggregate(
            metrics={"accuracy": sc.overall},
            breakdown={
                "normalization": self.mode,
                "perAnswerType": sc.perAnswerType,
                "perQuestionType": sc.perQuestionType,
            },
        )


class OKVQA(VQAv2):
    name = "okvqa"
    aliases = ("ok-vqa",)
    description = "OK-VQA (VQAv2 format), official VQA accuracy"
    openflamingo_postprocess = "okvqa-stemming"  # ok_vqa_utils.postprocess_ok_vqa_generation
    OPTIONS = vqav2_format_options(
        "okvqa",
        {
            "questions": "OpenEnded_mscoco_val2014_questions.json",
            "annotations": "mscoco_val2014_annotations.json",
            "images": "val2014",
            "train_questions": "OpenEnded_mscoco_train2014_questions.json",
            "train_annotations": "mscoco_train2014_annotations.json",
            "train_images": "train2014",
        },
        {
            "questions": f"{OKVQA_SITE} (testing questions)",
            "annotations": f"{OKVQA_SITE} (testing annotations)",
            "images": COCO_VAL,
            "train_questions": f"{OKVQA_SITE} (training questions)",
            "train_annotations": f"{OKVQA_SITE} (training annotations)",
            "train_images": COCO_TRAIN,
        },
    )


TASKS = [VQAv2, OKVQA]
