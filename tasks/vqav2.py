"""VQAv2-format tasks (``vqav2``, alias ``vqa``; ``okvqa``): official question + annotation JSON files and
an image folder. Accuracy is the official VQA metric (GT-Vision-Lab/VQA ``vqaEval.py``), or
OpenFlamingo's variant with ``--vqa-normalization openflamingo``; the mode is recorded in results.

Images are found in the folder by the trailing number of their file name (``COCO_val2014_000000000042.jpg``
or ``42.jpg`` both give image 42).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from mmgpt_eval.errors import UserError
from mmgpt_eval.io import read_json
from mmgpt_eval.metrics.vqa import score_vqa, vqa_accuracy
from mmgpt_eval.model.generate import GenerationSettings
from mmgpt_eval.taskapi import Aggregate, ImageRef, MetricInfo, Output, Sample, Task
from mmgpt_eval.templates import Template

_IMG_RE = re.compile(r"(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)


def index_images(folder: str | Path) -> dict[int, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("image folder not found", folder)
    out: dict[int, Path] = {}
    for p in folder.iterdir():
        m = _IMG_RE.search(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def load_vqa_files(questions_path: Path, annotations_path: Path | None, images: Path,
                   require_answers: bool = True) -> tuple[list[Sample], list[dict], list[dict]]:
    qdoc = read_json(questions_path)
    if not isinstance(qdoc, dict) or not isinstance(qdoc.get("questions"), list):
        raise UserError("expected the official VQA questions format: {\"questions\": [...]}", questions_path)
    questions = qdoc["questions"]
    annotations: list[dict] = []
    by_qid: dict[Any, dict] = {}
    if annotations_path is not None:
        adoc = read_json(annotations_path)
        if not isinstance(adoc, dict) or not isinstance(adoc.get("annotations"), list):
            raise UserError("expected the official VQA annotations format: {\"annotations\": [...]}", annotations_path)
        annotations = adoc["annotations"]
        for i, a in enumerate(annotations):
            for k in ("question_id", "answers", "question_type", "answer_type"):
                if k not in a:
                    raise UserError(f"annotation {i} lacks {k!r}", annotations_path)
            by_qid[a["question_id"]] = a
    elif require_answers:
        raise UserError("annotations are required", questions_path)
    img_index = index_images(images)
    samples = []
    for i, q in enumerate(questions):
        for k in ("question_id", "question", "image_id"):
            if k not in q:
                raise UserError(f"question {i} lacks {k!r}", questions_path)
        qid = q["question_id"]
        ann = by_qid.get(qid)
        if ann is None and annotations_path is not None:
            raise UserError(f"question {qid} has no annotation", annotations_path)
        img = img_index.get(int(q["image_id"]))
        if img is None:
            raise UserError(f"no image file for image_id {q['image_id']} (question {qid})", images)
        answers = [a["answer"] for a in ann["answers"]] if ann else []
        samples.append(Sample(
            id=str(qid), images=[ImageRef.from_path(img)],
            fields={"question": q["question"]}, references=answers,
            meta={"question_id": qid, "image_id": q["image_id"],
                  "question_type": ann["question_type"] if ann else None,
                  "answer_type": ann["answer_type"] if ann else None}))
    return samples, questions, annotations


class VQAv2(Task):
    name = "vqav2"
    aliases = ("vqa",)
    description = "VQAv2 (official question/annotation JSON + images), official VQA accuracy"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"
    flag = "vqav2"
    shared_options = ("vqa_normalization",)

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        f = cls.flag
        group.add_argument(f"--{f}-questions", dest=f"{f}_questions", default=None, help="questions JSON (eval split)")
        group.add_argument(f"--{f}-annotations", dest=f"{f}_annotations", default=None, help="annotations JSON")
        group.add_argument(f"--{f}-images", dest=f"{f}_images", default=None, help="image folder")
        group.add_argument(f"--{f}-train-questions", dest=f"{f}_train_questions", default=None,
                           help="train questions JSON (few-shot demos)")
        group.add_argument(f"--{f}-train-annotations", dest=f"{f}_train_annotations", default=None)
        group.add_argument(f"--{f}-train-images", dest=f"{f}_train_images", default=None)
        if cls.flag == "vqav2":
            group.add_argument("--vqa-normalization", dest="vqa_normalization", default=None,
                               choices=["official", "openflamingo"],
                               help="official (default): GT-Vision-Lab vqaEval.py; openflamingo: always normalise")

    layout = {"questions": "v2_OpenEnded_mscoco_val2014_questions.json",
              "annotations": "v2_mscoco_val2014_annotations.json", "images": "val2014",
              "train_questions": "v2_OpenEnded_mscoco_train2014_questions.json",
              "train_annotations": "v2_mscoco_train2014_annotations.json", "train_images": "train2014"}
    sources = {"questions": "https://visualqa.org/download.html (Validation questions 2017 v2.0)",
               "annotations": "https://visualqa.org/download.html (Validation annotations 2017 v2.0)",
               "images": "https://cocodataset.org/#download (2014 Val images, unzip to val2014/)",
               "train_questions": "https://visualqa.org/download.html (Training questions 2017 v2.0)",
               "train_annotations": "https://visualqa.org/download.html (Training annotations 2017 v2.0)",
               "train_images": "https://cocodataset.org/#download (2014 Train images, unzip to train2014/)"}

    def data_layout(self, root: Path) -> dict[str, Path]:
        return {f"{self.flag}_{k}": root / self.flag / v for k, v in self.layout.items()}

    def data_sources(self) -> dict[str, str]:
        return {f"{self.flag}_{k}": v for k, v in self.sources.items()}

    def optional_data(self) -> set[str]:
        return {f"{self.flag}_train_{k}" for k in ("questions", "annotations", "images")}

    def _path(self, key: str, required: bool = True) -> Path | None:
        v = self.option(f"{self.flag}_{key}")
        if v is None:
            if required:
                raise UserError(f"task {self.name} needs --{self.flag}-{key.replace('_', '-')} (or a data root, "
                                f"see `mmgpt-eval data check`)")
            return None
        p = Path(v)
        if not p.exists():
            raise UserError(f"{self.flag} {key.replace('_', ' ')} not found (`mmgpt-eval data check --tasks "
                            f"{self.name}` lists what is missing and where to get it)", p)
        return p

    def data_files(self) -> dict[str, Path | None]:
        return {k: (Path(self.options[f"{self.flag}_{k}"]) if self.options.get(f"{self.flag}_{k}") else None)
                for k in ("questions", "annotations", "images")}

    @property
    def mode(self) -> str:
        return self.option("vqa_normalization", "official")

    def load(self) -> list[Sample]:
        samples, self._questions, self._annotations = load_vqa_files(
            self._path("questions"), self._path("annotations"), self._path("images"))
        return samples

    def fewshot_pool(self) -> list[Sample]:
        if not hasattr(self, "_pool"):
            q = self._path("train_questions", required=False)
            if q is None:
                raise UserError(f"few-shot on {self.name} needs --{self.flag}-train-questions/-annotations/-images")
            self._pool = load_vqa_files(q, self._path("train_annotations"), self._path("train_images"))[0][:2048]
        return self._pool

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def generation_settings(self, template: Template) -> GenerationSettings:
        if template.name == "of-vqa":  # OpenFlamingo eval: 5 new tokens, 3 beams, length_penalty 0
            return GenerationSettings(max_new_tokens=5, num_beams=3, length_penalty=0.0)
        return GenerationSettings(max_new_tokens=10)

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


class OKVQA(VQAv2):
    name = "okvqa"
    aliases = ("ok-vqa",)
    description = "OK-VQA (VQAv2 format), official VQA accuracy"
    flag = "okvqa"
    layout = {"questions": "OpenEnded_mscoco_val2014_questions.json", "annotations": "mscoco_val2014_annotations.json",
              "images": "val2014", "train_questions": "OpenEnded_mscoco_train2014_questions.json",
              "train_annotations": "mscoco_train2014_annotations.json", "train_images": "train2014"}
    sources = {"questions": "https://okvqa.allenai.org/download.html (testing questions)",
               "annotations": "https://okvqa.allenai.org/download.html (testing annotations)",
               "images": "https://cocodataset.org/#download (2014 Val images, unzip to val2014/)",
               "train_questions": "https://okvqa.allenai.org/download.html (training questions)",
               "train_annotations": "https://okvqa.allenai.org/download.html (training annotations)",
               "train_images": "https://cocodataset.org/#download (2014 Train images, unzip to train2014/)"}


TASKS = [VQAv2, OKVQA]
