"""VizWiz VQA validation (4,319 questions from blind photographers): the official annotations ``val.json``
(a list of ``{"image": "VizWiz_val_00000000.jpg", "question", "answers": [10 x {"answer",
"answer_confidence"}], "answer_type", "answerable"}``) and the image folder ``val/``; few-shot demos from
``train.json`` + ``train/``. Sample ids are the image file names without ``.jpg`` (one question per image).

Accuracy over the 10 answers, ``unanswerable`` being an ordinary answer string. ``--vqa-normalization``
(shared with the other VQA tasks):

``official`` (default)
    the VizWiz evaluation code (vizwiz.org, ``VQAEval.evaluate``): the prediction is always normalised
    (newline/tab -> space, strip, VQA punctuation, digits/articles/contractions), the ground-truth answers
    are compared as the file gives them (VizWiz answers are already normalised), and the 10 leave-one-out
    subsets are taken by position: ``mean_i min(1, #{j != i: answers[j] == prediction} / 3)``.
``openflamingo``
    OpenFlamingo's ``vqa_metric.py``: the same normalisation applied to the answers as well.

Breakdown: accuracy per answer type (``perAnswerType``, as the official evaluator reports it) and per
answerability (the ``answerable`` flag of the annotations).
"""

from __future__ import annotations

from mmgpt_eval.taskapi import DataFile, Sample, UserError
from mmgpt_eval.taskapi.datasets import VIZWIZ_ANSWERABLE, load_vizwiz
from mmgpt_eval.taskapi.metrics import vizwiz_accuracy
from mmgpt_eval.taskapi.reporting import BreakdownTable, BreakdownTables
from mmgpt_eval.taskapi.vqa import AccuracyGroup, VQATask, normalization_option

SITE = "https://vizwiz.org/tasks-and-datasets/vqa/"


class VizWiz(VQATask):
    name = "vizwiz"
    aliases = ("vizwiz-vqa",)
    description = "VizWiz VQA val (official annotations + images), VQA accuracy by answer type and answerability"
    accuracy_description = "VQA accuracy over the 10 answers ({mode} normalisation), x100, 2 decimals"
    normalization_names = {"official": "VizWiz evaluator", "openflamingo": "OpenFlamingo"}
    OPTIONS = (
        DataFile(
            "annotations", "official val.json", layout="vizwiz/val.json", source=f"{SITE} (Annotations.zip: val.json)"
        ),
        DataFile(
            "images",
            "val image folder",
            layout="vizwiz/val",
            source=f"{SITE} (val.zip, unzip so that vizwiz/val/VizWiz_val_*.jpg exist)",
        ),
        DataFile(
            "train_annotations",
            "official train.json (few-shot demos)",
            layout="vizwiz/train.json",
            required=False,
            source=f"{SITE} (Annotations.zip: train.json)",
        ),
        DataFile(
            "train_images",
            "train image folder (few-shot demos)",
            layout="vizwiz/train",
            required=False,
            source=f"{SITE} (train.zip, unzip so that vizwiz/train/VizWiz_train_*.jpg exist)",
        ),
        normalization_option(
            "official (default): the VizWiz evaluator (normalise the prediction only); "
            "openflamingo: normalise the answers too"
        ),
    )
    groups = (
        AccuracyGroup("answer_type", "perAnswerType", "n_by_answer_type"),
        AccuracyGroup("answerable", "accuracy_by_answerable", "n_by_answerable", VIZWIZ_ANSWERABLE),
    )
    view = BreakdownTables(
        BreakdownTable("perAnswerType", "VQA accuracy per answer type", "n_by_answer_type", "%"),
        BreakdownTable("accuracy_by_answerable", "VQA accuracy per answerability", "n_by_answerable", "%"),
    )

    def load(self) -> list[Sample]:
        ann = self.path("annotations")
        return load_vizwiz(ann, self.image_folder())

    def fewshot_pool(self) -> list[Sample]:
        ann = self.path("train_annotations", required=False)
        if ann is None:
            raise UserError("few-shot on vizwiz needs --vizwiz-train-annotations and --vizwiz-train-images")
        return load_vizwiz(ann, self.path("train_images"))

    def accuracy(self, prediction: str, answers: list[str]) -> float:
        if self.mode == "official":
            return vizwiz_accuracy(prediction, answers)
        return super().accuracy(prediction, answers)


TASK = VizWiz
