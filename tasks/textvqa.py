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

from pathlib import Path
from typing import Any

from mmgpt_eval.taskapi import (Aggregate, DataFile, GenerationSettings, ImageRef, MetricInfo, Option, Output, Sample,
                                Task, UserError)
from mmgpt_eval.taskapi.datasets import path_inside, read_json
from mmgpt_eval.taskapi.metrics import vqa_accuracy

SITE = "https://textvqa.org/dataset/"
HINT = "`mmgpt-eval data check --tasks textvqa` lists what is missing and where to get it"


def _alternative_given(o: dict[str, Any]) -> bool:
    return bool(o.get("textvqa_questions") or o.get("textvqa_annotations"))


class _Images:
    """``<folder>/<image_id>.jpg``, checked once per image id (several questions share an image)."""

    def __init__(self, folder: Path, source: Path):
        self.folder, self.source = folder, source
        self.found: dict[str, ImageRef] = {}

    def __call__(self, image_id: Any, where: str) -> ImageRef:
        if not isinstance(image_id, str) or not image_id:
            raise UserError(f"{where}: 'image_id' must be a non-empty string", self.source)
        if image_id not in self.found:
            p = path_inside(self.folder, f"{image_id}.jpg", self.source)
            if not p.is_file():
                raise UserError(f"no image file {image_id}.jpg for {where} ({HINT})", self.folder)
            self.found[image_id] = ImageRef.from_path(p)
        return self.found[image_id]


def _sample(qid: Any, question: Any, image: ImageRef, image_id: str, answers: list[str], where: str,
            path: Path) -> Sample:
    if not isinstance(qid, (int, str)) or isinstance(qid, bool):
        raise UserError(f"{where}: 'question_id' must be an integer or string", path)
    if not isinstance(question, str):
        raise UserError(f"{where}: 'question' must be a string", path)
    return Sample(id=str(qid), images=[image], fields={"question": question}, references=answers,
                  meta={"question_id": qid, "image_id": image_id})


def _check_unique(samples: list[Sample], path: Path) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise UserError(f"duplicate question_id {s.meta['question_id']!r}", path)
        seen.add(s.id)


def load_official(path: Path, images: Path, limit: int | None = None) -> list[Sample]:
    """The official TextVQA JSON (the first ``limit`` questions)."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UserError("expected the official TextVQA format: {\"dataset_name\": \"textvqa\", \"data\": [...]}", path)
    find = _Images(images, path)
    out = []
    for i, q in enumerate(doc["data"][:limit]):
        where = f"data entry {i}"
        if not isinstance(q, dict):
            raise UserError(f"{where} is not an object", path)
        for k in ("question_id", "question", "image_id"):
            if k not in q:
                raise UserError(f"{where} lacks {k!r}", path)
        answers = q.get("answers")
        if answers is None:
            raise UserError(f"{where} (question_id {q['question_id']}) has no 'answers' (the test split has no "
                            "public answers; evaluate the val split)", path)
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise UserError(f"{where} (question_id {q['question_id']}): 'answers' must be a non-empty list of "
                            "strings", path)
        where += f" (question_id {q['question_id']})"
        out.append(_sample(q["question_id"], q["question"], find(q["image_id"], where), q["image_id"],
                           list(answers), where, path))
    _check_unique(out, path)
    return out


def load_vqa_format(questions: Path, annotations: Path, images: Path) -> list[Sample]:
    """OpenFlamingo's VQAv2-format conversion: ``{"questions": [{"question_id", "question", "image_id"}]}``
    and ``{"annotations": [{"question_id", "answers": [{"answer", ...}], ...}]}``."""
    qdoc, adoc = read_json(questions), read_json(annotations)
    if not isinstance(qdoc, dict) or not isinstance(qdoc.get("questions"), list):
        raise UserError("expected VQAv2-format questions: {\"questions\": [...]}", questions)
    if not isinstance(adoc, dict) or not isinstance(adoc.get("annotations"), list):
        raise UserError("expected VQAv2-format annotations: {\"annotations\": [...]}", annotations)
    by_qid: dict[str, list[str]] = {}
    for i, a in enumerate(adoc["annotations"]):
        if not isinstance(a, dict) or "question_id" not in a or not isinstance(a.get("answers"), list):
            raise UserError(f"annotation {i} needs 'question_id' and an 'answers' list", annotations)
        answers: Any = [d.get("answer") if isinstance(d, dict) else None for d in a["answers"]]
        if not answers or not all(isinstance(x, str) for x in answers):
            raise UserError(f"annotation {i} (question_id {a['question_id']}): 'answers' must be a non-empty list "
                            "of {\"answer\": string} objects", annotations)
        if str(a["question_id"]) in by_qid:
            raise UserError(f"duplicate question_id {a['question_id']!r} (annotation {i})", annotations)
        by_qid[str(a["question_id"])] = answers
    find = _Images(images, questions)
    out = []
    for i, q in enumerate(qdoc["questions"]):
        if not isinstance(q, dict):
            raise UserError(f"question {i} is not an object", questions)
        for k in ("question_id", "question", "image_id"):
            if k not in q:
                raise UserError(f"question {i} lacks {k!r}", questions)
        where = f"question {i} (question_id {q['question_id']})"
        answers = by_qid.get(str(q["question_id"]))
        if answers is None:
            raise UserError(f"question {q['question_id']} has no annotation", annotations)
        out.append(_sample(q["question_id"], q["question"], find(q["image_id"], where), q["image_id"], answers,
                           where, questions))
    _check_unique(out, questions)
    return out


class TextVQA(Task):
    openflamingo_template = "of-vqa"
    openflamingo_options = {"normalization": "openflamingo"}
    name = "textvqa"
    aliases = ("text-vqa",)
    description = "TextVQA 0.5.1 val (official JSON or OpenFlamingo's VQAv2-format files + images), VQA accuracy"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"

    OPTIONS = (
        # the official JSON, unless the user chose the VQAv2-format pair (--textvqa-questions/-annotations)
        DataFile("val_json", "official TextVQA_0.5.1_val.json",
                 layout=lambda o: None if _alternative_given(o) else "textvqa/TextVQA_0.5.1_val.json",
                 source=f"{SITE} (TextVQA 0.5.1 validation JSON, "
                        "https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_val.json)"),
        DataFile("questions", "VQAv2-format questions JSON, OpenFlamingo's conversion (with --textvqa-annotations, "
                              "instead of --textvqa-val-json)"),
        DataFile("annotations", "VQAv2-format annotations JSON, OpenFlamingo's conversion"),
        DataFile("images", "image folder <image_id>.jpg (train_images: the val images are there)",
                 layout="textvqa/train_images",
                 source=f"{SITE} (training set images, https://dl.fbaipublicfiles.com/textvqa/images/"
                        "train_val_images.zip; unzip so that textvqa/train_images/ exists)"),
        DataFile("train_json", "official TextVQA_0.5.1_train.json (few-shot demos; images in the same folder)",
                 layout="textvqa/TextVQA_0.5.1_train.json", required=False,
                 source=f"{SITE} (TextVQA 0.5.1 training JSON, "
                        "https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_train.json)"),
        Option("normalization", "official (default): GT-Vision-Lab vqaEval.py; openflamingo: always normalise",
               choices=("official", "openflamingo"), default="official", shared_key="vqa_normalization"),
    )
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=10)}  # of-vqa: the template's (OpenFlamingo's)

    @property
    def mode(self) -> str:
        return self.option("normalization")

    @property
    def data_format(self) -> str:
        return "vqav2" if _alternative_given(self.options) else "official"

    def load(self) -> list[Sample]:
        given = {k: self.options.get(f"textvqa_{k}") for k in ("val_json", "questions", "annotations")}
        if given["val_json"] and (given["questions"] or given["annotations"]):
            raise UserError("task textvqa takes either --textvqa-val-json (the official TextVQA JSON) or "
                            "--textvqa-questions with --textvqa-annotations (VQAv2 format), not both")
        if bool(given["questions"]) != bool(given["annotations"]):
            raise UserError("the VQAv2-format TextVQA files come as a pair: give both --textvqa-questions and "
                            "--textvqa-annotations (or --textvqa-val-json instead)")
        if not any(given.values()):
            raise UserError(f"task textvqa needs --textvqa-val-json, or --textvqa-questions with "
                            f"--textvqa-annotations (or a data root; {HINT})")
        if given["val_json"]:
            return load_official(self.path("val_json"), self._images())
        return load_vqa_format(self.path("questions"), self.path("annotations"), self._images())

    def _images(self) -> Path:
        images = self.path("images")
        if not images.is_dir():
            raise UserError(f"textvqa image folder is not a folder ({HINT})", images)
        return images

    def fewshot_pool(self) -> list[Sample]:
        train = self.path("train_json", required=False)
        if train is None:
            raise UserError("few-shot on textvqa needs --textvqa-train-json (TextVQA_0.5.1_train.json; its "
                            "images are in the same --textvqa-images folder)")
        return load_official(train, self._images())

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def metric_info(self) -> dict[str, MetricInfo]:
        return {"accuracy": MetricInfo(kind="continuous", scale=100.0, unit="%", per_sample="accuracy",
                                       description=f"VQA accuracy over the 10 answers ({self.mode} normalisation), "
                                                   "x100, 2 decimals")}

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {"accuracy": vqa_accuracy(outputs["main"].prediction, sample.references, self.mode)}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        accs = [r["metrics"]["accuracy"] for r in records]
        return Aggregate(metrics={"accuracy": round(100 * float(sum(accs)) / len(accs), 2)},
                         breakdown={"normalization": self.mode, "data_format": self.data_format})


TASK = TextVQA
