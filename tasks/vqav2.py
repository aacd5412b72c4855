"""VQAv2-format tasks (``vqav2``, alias ``vqa``; ``okvqa``): official question + annotation JSON files and
an image folder. Accuracy is the official VQA metric (GT-Vision-Lab/VQA ``vqaEval.py``), or
OpenFlamingo's variant with ``--vqa-normalization openflamingo``; the mode is recorded in results.

Images are found in the folder by the trailing number of their file name (``COCO_val2014_000000000042.jpg``
or ``42.jpg`` both give image 42).
"""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi import (Aggregate, DataFile, GenerationSettings, MetricInfo, Option, Output, Sample, Task,
                                UserError)
from mmgpt_eval.taskapi.datasets import load_vqa_files
from mmgpt_eval.taskapi.metrics import score_vqa, vqa_accuracy
from mmgpt_eval.taskapi.reporting import Column, ReportTables, dict_table

COCO_VAL = "https://cocodataset.org/#download (2014 Val images, unzip to val2014/)"
COCO_TRAIN = "https://cocodataset.org/#download (2014 Train images, unzip to train2014/)"


def vqa_options(folder: str, files: dict[str, str], sources: dict[str, str]) -> tuple[Option, ...]:
    """The data files of a VQAv2-format task under ``<data root>/<folder>/`` and the normalisation."""
    helps = {"questions": "questions JSON (eval split)", "annotations": "annotations JSON", "images": "image folder",
             "train_questions": "train questions JSON (few-shot demos)", "train_annotations": "train annotations JSON",
             "train_images": "train image folder"}
    return tuple(DataFile(k, helps[k], layout=f"{folder}/{v}", source=sources[k], required=not k.startswith("train_"))
                 for k, v in files.items()) + (
        Option("normalization", "official (default): GT-Vision-Lab vqaEval.py; openflamingo: always normalise",
               choices=("official", "openflamingo"), default="official", shared_key="vqa_normalization"),)


class VQAv2(Task):
    name = "vqav2"
    aliases = ("vqa",)
    description = "VQAv2 (official question/annotation JSON + images), official VQA accuracy"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"
    openflamingo_template = "of-vqa"
    openflamingo_options = {"normalization": "openflamingo"}
    OPTIONS = vqa_options("vqav2", {
        "questions": "v2_OpenEnded_mscoco_val2014_questions.json", "annotations": "v2_mscoco_val2014_annotations.json",
        "images": "val2014", "train_questions": "v2_OpenEnded_mscoco_train2014_questions.json",
        "train_annotations": "v2_mscoco_train2014_annotations.json", "train_images": "train2014"}, {
        "questions": "https://visualqa.org/download.html (Validation questions 2017 v2.0)",
        "annotations": "https://visualqa.org/download.html (Validation annotations 2017 v2.0)",
        "images": COCO_VAL,
        "train_questions": "https://visualqa.org/download.html (Training questions 2017 v2.0)",
        "train_annotations": "https://visualqa.org/download.html (Training annotations 2017 v2.0)",
        "train_images": COCO_TRAIN})
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=10)}  # of-vqa: the template's (OpenFlamingo's)

    @property
    def mode(self) -> str:
        return self.option("normalization")

    def load(self) -> list[Sample]:
        samples, self._questions, self._annotations = load_vqa_files(
            self.path("questions"), self.path("annotations"), self.path("images"))
        return samples

    def fewshot_pool(self) -> list[Sample]:
        q = self.path("train_questions", required=False)
        if q is None:
            raise UserError(f"few-shot on {self.name} needs --{self.name}-train-questions/-annotations/-images")
        return load_vqa_files(q, self.path("train_annotations"), self.path("train_images"))[0]

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def metric_info(self) -> dict[str, MetricInfo]:
        return {"accuracy": MetricInfo(kind="continuous", scale=100.0, unit="%", per_sample="accuracy",
                                       description=f"VQA accuracy ({self.mode} normalisation), x100, 2 decimals")}

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {"accuracy": vqa_accuracy(outputs["main"].prediction, sample.references, self.mode)}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        keep = {s.meta["question_id"] for s in samples}
        questions = [q for q in self._questions if q["question_id"] in keep]
        annotations = [a for a in self._annotations if a["question_id"] in keep]
        preds = [{"question_id": s.meta["question_id"], "answer": r["prediction"]} for s, r in zip(samples, records)]
        sc = score_vqa(questions, annotations, preds, self.mode)
        return Aggregate(metrics={"accuracy": sc.overall},
                         breakdown={"normalization": self.mode, "perAnswerType": sc.perAnswerType,
                                    "perQuestionType": sc.perQuestionType})

    def report_tables(self, columns: list[Column]) -> ReportTables:
        out = ReportTables()
        for key, what in (("perAnswerType", "answer type"), ("perQuestionType", "question type")):
            if any(key in c.breakdown for c in columns):
                out.tables.append(dict_table(f"VQA accuracy per {what}", columns,
                                             [c.breakdown.get(key) for c in columns]))
                out.consumed.add(key)
        return out


class OKVQA(VQAv2):
    name = "okvqa"
    aliases = ("ok-vqa",)
    description = "OK-VQA (VQAv2 format), official VQA accuracy"
    openflamingo_postprocess = "okvqa-stemming"  # ok_vqa_utils.postprocess_ok_vqa_generation
    OPTIONS = vqa_options("okvqa", {
        "questions": "OpenEnded_mscoco_val2014_questions.json", "annotations": "mscoco_val2014_annotations.json",
        "images": "val2014", "train_questions": "OpenEnded_mscoco_train2014_questions.json",
        "train_annotations": "mscoco_train2014_annotations.json", "train_images": "train2014"}, {
        "questions": "https://okvqa.allenai.org/download.html (testing questions)",
        "annotations": "https://okvqa.allenai.org/download.html (testing annotations)",
        "images": COCO_VAL,
        "train_questions": "https://okvqa.allenai.org/download.html (training questions)",
        "train_annotations": "https://okvqa.allenai.org/download.html (training annotations)",
        "train_images": COCO_TRAIN})


TASKS = [VQAv2, OKVQA]
