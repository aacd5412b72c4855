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

from pathlib import Path
from typing import Any

from mmgpt_eval.taskapi import (Aggregate, DataFile, GenerationSettings, ImageRef, MetricInfo, Option, Output, Sample,
                                Task, UserError)
from mmgpt_eval.taskapi.datasets import path_inside, read_json
from mmgpt_eval.taskapi.metrics import normalize_openflamingo, vqa_accuracy
from mmgpt_eval.taskapi.reporting import Column, ReportTables, dict_table

SITE = "https://vizwiz.org/tasks-and-datasets/vqa/"
HINT = "`mmgpt-eval data check --tasks vizwiz` lists what is missing and where to get it"
ANSWERABLE = {1: "answerable", 0: "unanswerable"}


def vizwiz_accuracy(prediction: str, answers: list[str]) -> float:
    """The VizWiz evaluator's accuracy of one prediction (0..1): the prediction normalised, the answers as
    given, leave-one-out by position, summed in answer order as the official loop does."""
    res = normalize_openflamingo(prediction)
    accs = []
    for i in range(len(answers)):
        matching = [a for j, a in enumerate(answers) if i != j and a == res]
        accs.append(min(1, float(len(matching)) / 3))
    return float(sum(accs)) / len(accs)


def load_annotations(path: Path, images: Path, limit: int | None = None) -> list[Sample]:
    """Official VizWiz VQA annotations (the first ``limit`` entries) with their images."""
    doc = read_json(path)
    if not isinstance(doc, list):
        raise UserError("expected the official VizWiz VQA annotations: a list of {\"image\", \"question\", "
                        "\"answers\", ...}", path)
    out: list[Sample] = []
    seen: dict[str, int] = {}
    for i, q in enumerate(doc[:limit]):
        if not isinstance(q, dict):
            raise UserError(f"entry {i} is not an object", path)
        for k in ("image", "question"):
            if k not in q:
                raise UserError(f"entry {i} lacks {k!r}", path)
        image, question = q["image"], q["question"]
        if not isinstance(image, str) or not image:
            raise UserError(f"entry {i}: 'image' must be a file name", path)
        if not isinstance(question, str):
            raise UserError(f"entry {i} ({image}): 'question' must be a string", path)
        if "answers" not in q:
            raise UserError(f"entry {i} ({image}) has no 'answers' (the test split has no public answers; "
                            "evaluate the val split)", path)
        answers = [d.get("answer") if isinstance(d, dict) else None for d in q["answers"]] \
            if isinstance(q["answers"], list) else []
        if not answers or not all(isinstance(a, str) for a in answers):
            raise UserError(f"entry {i} ({image}): 'answers' must be a non-empty list of {{\"answer\": string}} "
                            "objects", path)
        sid = Path(image).stem
        if sid in seen:
            raise UserError(f"entries {seen[sid]} and {i} share the image {image!r} (sample ids are the image "
                            "names)", path)
        seen[sid] = i
        img = path_inside(images, image, path)
        if not img.is_file():
            raise UserError(f"no image file {image} for entry {i} ({HINT})", images)
        answerable = q.get("answerable")
        out.append(Sample(id=sid, images=[ImageRef.from_path(img)], fields={"question": question},
                          references=answers,
                          meta={"question_id": sid, "image": image, "answer_type": q.get("answer_type"),
                                "answerable": answerable if answerable in ANSWERABLE else None}))
    return out


def _pct(values: list[float]) -> float:
    return round(100 * float(sum(values)) / len(values), 2)


class VizWiz(Task):
    openflamingo_template = "of-vqa"
    openflamingo_options = {"normalization": "openflamingo"}
    name = "vizwiz"
    aliases = ("vizwiz-vqa",)
    description = "VizWiz VQA val (official annotations + images), VQA accuracy by answer type and answerability"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"

    OPTIONS = (
        DataFile("annotations", "official val.json", layout="vizwiz/val.json",
                 source=f"{SITE} (Annotations.zip: val.json)"),
        DataFile("images", "val image folder", layout="vizwiz/val",
                 source=f"{SITE} (val.zip, unzip so that vizwiz/val/VizWiz_val_*.jpg exist)"),
        DataFile("train_annotations", "official train.json (few-shot demos)", layout="vizwiz/train.json",
                 required=False, source=f"{SITE} (Annotations.zip: train.json)"),
        DataFile("train_images", "train image folder (few-shot demos)", layout="vizwiz/train", required=False,
                 source=f"{SITE} (train.zip, unzip so that vizwiz/train/VizWiz_train_*.jpg exist)"),
        Option("normalization", "official (default): the VizWiz evaluator (normalise the prediction only); "
                                "openflamingo: normalise the answers too",
               choices=("official", "openflamingo"), default="official", shared_key="vqa_normalization"),
    )
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=10)}  # of-vqa: the template's (OpenFlamingo's)

    @property
    def mode(self) -> str:
        return self.option("normalization")

    def load(self) -> list[Sample]:
        ann, images = self.path("annotations"), self.path("images")
        if not images.is_dir():
            raise UserError(f"vizwiz image folder is not a folder ({HINT})", images)
        return load_annotations(ann, images)

    def fewshot_pool(self) -> list[Sample]:
        ann = self.path("train_annotations", required=False)
        if ann is None:
            raise UserError("few-shot on vizwiz needs --vizwiz-train-annotations and --vizwiz-train-images")
        return load_annotations(ann, self.path("train_images"))

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def metric_info(self) -> dict[str, MetricInfo]:
        how = "VizWiz evaluator" if self.mode == "official" else "OpenFlamingo"
        return {"accuracy": MetricInfo(kind="continuous", scale=100.0, unit="%", per_sample="accuracy",
                                       description=f"VQA accuracy over the 10 answers ({how} normalisation), x100, "
                                                   "2 decimals")}

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        pred = outputs["main"].prediction
        if self.mode == "official":
            return {"accuracy": vizwiz_accuracy(pred, sample.references)}
        return {"accuracy": vqa_accuracy(pred, sample.references, self.mode)}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        by_type: dict[str, list[float]] = {}
        by_answerable: dict[str, list[float]] = {}
        for s, r in zip(samples, records):
            acc = r["metrics"]["accuracy"]
            if s.meta.get("answer_type") is not None:
                by_type.setdefault(str(s.meta["answer_type"]), []).append(acc)
            if s.meta.get("answerable") is not None:
                by_answerable.setdefault(ANSWERABLE[s.meta["answerable"]], []).append(acc)
        accs = [r["metrics"]["accuracy"] for r in records]
        return Aggregate(
            metrics={"accuracy": _pct(accs)},
            breakdown={"normalization": self.mode,
                       "perAnswerType": {k: _pct(v) for k, v in sorted(by_type.items())},
                       "n_by_answer_type": {k: len(v) for k, v in sorted(by_type.items())},
                       "accuracy_by_answerable": {k: _pct(v) for k, v in sorted(by_answerable.items())},
                       "n_by_answerable": {k: len(v) for k, v in sorted(by_answerable.items())}})

    def report_tables(self, columns: list[Column]) -> ReportTables:
        out = ReportTables()
        for key, counts, what in (("perAnswerType", "n_by_answer_type", "answer type"),
                                  ("accuracy_by_answerable", "n_by_answerable", "answerability")):
            if any(key in c.breakdown for c in columns):
                out.tables.append(dict_table(f"VQA accuracy per {what}", columns,
                                             [c.breakdown.get(key) for c in columns],
                                             counts=[c.breakdown.get(counts) for c in columns], unit="%"))
                out.consumed |= {key, counts}
        return out


TASK = VizWiz
