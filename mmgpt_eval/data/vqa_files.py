"""Reading the official VQA file format (VQAv2, OK-VQA; also VQAv2 "how many" subsets): a questions
JSON, an annotations JSON and an image folder whose files end in the image id
(``COCO_val2014_000000000042.jpg`` or ``42.jpg`` both give image 42)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_json
from .fields import ident, kind, text
from .sample import ImageRef, Sample

_IMG_RE = re.compile(r"(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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


def load_vqa_files(
    questions_path: Path, annotations_path: Path | None, images: Path, require_answers: bool = True
) -> tuple[list[Sample], list[dict], list[dict]]:
    qdoc = read_json(questions_path)
    if not isinstance(qdoc, dict) or not isinstance(qdoc.get("questions"), list):
        raise UserError('expected the official VQA questions format: {"questions": [...]}', questions_path)
    questions = qdoc["questions"]
    annotations: list[dict] = []
    by_qid: dict[Any, dict] = {}
    if annotations_path is not None:
        adoc = read_json(annotations_path)
        if not isinstance(adoc, dict) or not isinstance(adoc.get("annotations"), list):
            raise UserError('expected the official VQA annotations format: {"annotations": [...]}', annotations_path)
        annotations = adoc["annotations"]
        for i, a in enumerate(annotations):
            if not isinstance(a, dict):
                raise UserError(f"annotation {i} is not an object", annotations_path)
            for k in ("question_id", "answers", "question_type", "answer_type"):
                if k not in a:
                    raise UserError(f"annotation {i} lacks {k!r}", annotations_path)
            where = f"annotation {i}"
            ident(a["question_id"], "question_id", annotations_path, where)
            where += f" (question_id {a['question_id']})"
            if not isinstance(a["answers"], list):
                raise UserError(f"{where}: 'answers' must be a list", annotations_path)
            for j, ans in enumerate(a["answers"]):
                if not isinstance(ans, dict) or "answer" not in ans:
                    raise UserError(f'{where}: answer {j} must be an object with an "answer"', annotations_path)
                text(ans["answer"], "answer", annotations_path, f"{where}, answer {j}")
            if a["question_id"] in by_qid:
                raise UserError(f"duplicate question_id {a['question_id']!r} (annotation {i})", annotations_path)
            by_qid[a["question_id"]] = a
    elif require_answers:
        raise UserError("annotations are required", questions_path)
    img_index = index_images(images)
    samples = []
    seen: dict[str, int] = {}
    for i, q in enumerate(questions):
        if not isinstance(q, dict):
            raise UserError(f"question {i} is not an object", questions_path)
        for k in ("question_id", "question", "image_id"):
            if k not in q:
                raise UserError(f"question {i} lacks {k!r}", questions_path)
        qid = ident(q["question_id"], "question_id", questions_path, f"question {i}")
        where = f"question {i} (question_id {qid})"
        text(q["question"], "question", questions_path, where)
        image_id = q["image_id"]
        if not (is_int(image_id) or (isinstance(image_id, str) and image_id.isdigit())):
            raise UserError(f"{where}: 'image_id' must be an integer, got {kind(image_id)}", questions_path)
        if str(qid) in seen:
            raise UserError(f"duplicate question_id {qid!r} (questions {seen[str(qid)]} and {i})", questions_path)
        seen[str(qid)] = i
        ann = by_qid.get(qid)
        if ann is None and annotations_path is not None:
            raise UserError(f"question {qid} has no annotation", annotations_path)
        img = img_index.get(int(q["image_id"]))
        if img is None:
            raise UserError(f"no image file for image_id {q['image_id']} (question {qid})", images)
        answers = [a["answer"] for a in ann["answers"]] if ann else []
        samples.append(
            Sample(
                id=str(qid),
                images=[ImageRef.from_path(img)],
                fields={"question": q["question"]},
                references=answers,
                meta={
                    "question_id": qid,
                    "image_id": q["image_id"],
                    "question_type": ann["question_type"] if ann else None,
                    "answer_type": ann["answer_type"] if ann else None,
                },
            )
        )
    return samples, questions, annotations
