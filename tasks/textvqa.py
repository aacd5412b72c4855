"""TextVQA 0.5.1 validation (5,000 questions about text in images): the official JSON
``TextVQA_0.5.1_val.json`` (``{"data": [{"question_id", "question", "image_id", "answers": [10 strings],
...}]}``) with the images ``train_images/<image_id>.jpg`` (TextVQA's val images live in train_images) --
or, instead of the official JSON, the VQAv2-format question/annotation pair OpenFlamingo's scripts
convert it to (``--textvqa-questions`` + ``--textvqa-annotations``). Exactly one of the two forms.

Accuracy is the VQA accuracy over the 10 answers with the shared ``--vqa-normalization``: ``official``
(default) is GT-Vision-Lab ``vqaEval.py`` (normalise only when the answers disagree), ``openflamingo``
always normalises (as OpenFlamingo's TextVQA numbers, and as TextVQA's own evaluator in MMF, which
always applies the same answer processing). Sample ids are TextVQA's question ids. Few-shot demos come
from ``TextVQA_0.5.1_train.json`` (same image folder).
"""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi import DataFile, Sample, UserError
from mmgpt_eval.taskapi.datasets import load_textvqa_json, load_textvqa_vqa_format
from mmgpt_eval.taskapi.vqa import VQATask, normalization_option

SITE = "https://textvqa.org/dataset/"
HINT = "`mmgpt-eval data check --tasks textvqa` lists what is missing and where to get it"


def _alternative_given(o: dict[str, Any]) -> bool:
    return bool(o.get("textvqa_questions") or o.get("textvqa_annotations"))


class TextVQA(VQATask):
    name = "textvqa"
    aliases = ("text-vqa",)
    description = "TextVQA 0.5.1 val (official JSON or OpenFlamingo's VQAv2-format files + images), VQA accuracy"
    accuracy_description = "VQA accuracy over the 10 answers ({mode} normalisation), x100, 2 decimals"
    OPTIONS = (
        # the official JSON, unless the user chose the VQAv2-format pair (--textvqa-questions/-annotations)
        DataFile(
            "val_json",
            "official TextVQA_0.5.1_val.json",
            layout=lambda o: None if _alternative_given(o) else "textvqa/TextVQA_0.5.1_val.json",
            source=f"{SITE} (TextVQA 0.5.1 validation JSON, "
            "https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_val.json)",
        ),
        DataFile(
            "questions",
            "VQAv2-format questions JSON, OpenFlamingo's conversion (with --textvqa-annotations, "
            "instead of --textvqa-val-json)",
        ),
        DataFile("annotations", "VQAv2-format annotations JSON, OpenFlamingo's conversion"),
        DataFile(
            "images",
            "image folder <image_id>.jpg (train_images: the val images are there)",
            layout="textvqa/train_images",
            source=f"{SITE} (training set images, https://dl.fbaipublicfiles.com/textvqa/images/"
            "train_val_images.zip; unzip so that textvqa/train_images/ exists)",
        ),
        DataFile(
            "train_json",
            "official TextVQA_0.5.1_train.json (few-shot demos; images in the same folder)",
            layout="textvqa/TextVQA_0.5.1_train.json",
            required=False,
            source=f"{SITE} (TextVQA 0.5.1 training JSON, "
            "https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_train.json)",
        ),
        normalization_option(),
    )

    def load(self) -> list[Sample]:
        given = {k: self.options.get(f"textvqa_{k}") for k in ("val_json", "questions", "annotations")}
        if given["val_json"] and (given["questions"] or given["annotations"]):
            raise UserError(
                "task textvqa takes either --textvqa-val-json (the official TextVQA JSON) or "
                "--textvqa-questions with --textvqa-annotations (VQAv2 format), not both"
            )
        if bool(given["questions"]) != bool(given["annotations"]):
            raise UserError(
                "the VQAv2-format TextVQA files come as a pair: give both --textvqa-questions and "
                "--textvqa-annotations (or --textvqa-val-json instead)"
            )
        if not any(given.values()):
            raise UserError(
                f"task textvqa needs --textvqa-val-json, or --textvqa-questions with "
                f"--textvqa-annotations (or a data root; {HINT})"
            )
        if given["val_json"]:
            return load_textvqa_json(self.path("val_json"), self.image_folder())
        return load_textvqa_vqa_format(self.path("questions"), self.path("annotations"), self.image_folder())

    def fewshot_pool(self) -> list[Sample]:
        train = self.path("train_json", required=False)
        if train is None:
            raise UserError(
                "few-shot on textvqa needs --textvqa-train-json (TextVQA_0.5.1_train.json; its "
                "images are in the same --textvqa-images folder)"
            )
        return load_textvqa_json(train, self.image_folder())

    def breakdown(self, samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"data_format": "vqav2" if _alternative_given(self.options) else "official"}


TASK = TextVQA
