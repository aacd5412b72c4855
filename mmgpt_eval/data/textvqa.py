"""Reading TextVQA 0.5.1: the official JSON (``{"data": [{"question_id", "question", "image_id", "answers":
[10 strings], ...}]}``) or OpenFlamingo's VQAv2-format conversion of it (a questions JSON and an
annotations JSON), with the images ``<folder>/<image_id>.jpg``. Sample ids are the question ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_json
from .paths import inside as path_inside
from .sample import ImageRef, Sample

HINT = "`mmgpt-eval data check --tasks textvqa` lists what is missing and where to get it"


class _Images:
    """``<folder>/<image_id>.jpg``, checked once per image id (several questions share an image)."""

    def __init__(self, folder: Path, source: Path):
        self.folder, self.source = folder, source
        self.found: dict[Any, ImageRef] = {}

    def __call__(self, image_id: Any, where: str) -> ImageRef:
        if not isinstance(image_id, str) or not image_id:
            raise UserError(f"{where}: 'image_id' must be a non-empty string", self.source)
        if image_id not in self.found:
            p = path_inside(self.folder, f"{image_id}.jpg", self.source)
            if not p.is_file():
                raise UserError(f"no image file {image_id}.jpg for {where} ({HINT})", self.folder)
            self.found[image_id] = ImageRef.from_path(p)
        return self.found[image_id]


def _sample(
    qid: Any, question: Any, image: ImageRef, image_id: str, answers: list[str], where: str, path: Path
) -> Sample:
    if not isinstance(qid, (int, str)) or isinstance(qid, bool):
        raise UserError(f"{where}: 'question_id' must be an integer or string", path)
    if not isinstance(question, str):
        raise UserError(f"{where}: 'question' must be a string", path)
    return Sample(
        id=str(qid),
        images=[image],
        fields={"question": question},
        references=answers,
        meta={"question_id": qid, "image_id": image_id},
    )


def _check_unique(samples: list[Sample], path: Path) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise UserError(f"duplicate question_id {s.meta['question_id']!r}", path)
        seen.add(s.id)


def load_textvqa_json(path: Path, images: Path, limit: int | None = None) -> list[Sample]:
    """The official TextVQA JSON (the first ``limit`` questions)."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UserError('expected the official TextVQA format: {"dataset_name": "textvqa", "data": [...]}', path)
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
            raise UserError(
                f"{where} (question_id {q['question_id']}) has no 'answers' (the test split has no "
                "public answers; evaluate the val split)",
                path,
            )
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise UserError(
                f"{where} (question_id {q['question_id']}): 'answers' must be a non-empty list of strings", path
            )
        where += f" (question_id {q['question_id']})"
        out.append(
            _sample(
                q["question_id"], q["question"], find(q["image_id"], where), q["image_id"], list(answers), where, path
            )
        )
    _check_unique(out, path)
    return out


def load_textvqa_vqa_format(questions: Path, annotations: Path, images: Path) -> list[Sample]:
    """OpenFlamingo's VQAv2-format conversion: ``{"questions": [{"question_id", "question", "image_id"}]}``
    and ``{"annotations": [{"question_id", "answers": [{"answer", ...}], ...}]}``."""
    qdoc, adoc = read_json(questions), read_json(annotations)
    if not isinstance(qdoc, dict) or not isinstance(qdoc.get("questions"), list):
        raise UserError('expected VQAv2-format questions: {"questions": [...]}', questions)
    if not isinstance(adoc, dict) or not isinstance(adoc.get("annotations"), list):
        raise UserError('expected VQAv2-format annotations: {"annotations": [...]}', annotations)
    by_qid: dict[str, list[str]] = {}
    for i, a in enumerate(adoc["annotations"]):
        if not isinstance(a, dict) or "question_id" not in a or not isinstance(a.get("answers"), list):
            raise UserError(f"annotation {i} needs 'question_id' and an 'answers' list", annotations)
        raw = [d.get("answer") if isinstance(d, dict) else None for d in a["answers"]]
        answers = [x for x in raw if isinstance(x, str)]
        if not raw or len(answers) != len(raw):
            raise UserError(
                f"annotation {i} (question_id {a['question_id']}): 'answers' must be a non-empty list "
                'of {"answer": string} objects',
                annotations,
            )
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
        found = by_qid.get(str(q["question_id"]))
        if found is None:
            raise UserError(f"question {q['question_id']} has no annotation", annotations)
        out.append(
            _sample(q["question_id"], q["question"], find(q["image_id"], where), q["image_id"], found, where, questions)
        )
    _check_unique(out, questions)
    return out
