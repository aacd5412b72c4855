"""Readers for the benchmarks whose answers are judged by a model, in the layouts their authors
distribute:

* LLaVA-Bench (In-the-Wild): ``questions.jsonl`` (one ``{"question_id", "image", "text", "category"}``
  per line), the reference answers ``answers_gpt4.jsonl`` (``{"question_id", "text", ...}``), the image
  captions ``context.jsonl`` (``{"id", "image", "caption"}``, matched to questions by image name) and
  ``images/``;
* MM-Vet: ``mm-vet.json``, one object keyed by question id, each ``{"imagename", "question",
  "answer", "capability": [...]}``, and ``images/``.

Every field is checked; a wrong one is a UserError naming the file and the question id. Each sample's
meta carries what judging needs from the per-sample log: the question, the image's name and content
sha256, the caption (LLaVA-Bench) and the category or capabilities."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import iter_jsonl, read_json
from .paths import inside as path_inside
from .sample import ImageRef, Sample


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _string(entry: dict[str, Any], key: str, where: Path, what: str, line: int | None = None) -> str:
    v = entry.get(key)
    if key not in entry:
        raise UserError(f"{what} has no {key!r}", where, line)
    if not isinstance(v, str) or not v.strip():
        raise UserError(f"{what}: {key!r} must be a non-empty string, got {type(v).__name__}", where, line)
    return v


def _caption(entry: dict[str, Any], where: Path, what: str, line: int) -> str:
    """A context line's caption: a string, or a list of strings (one per line, as some copies of the
    file store several captions of one image)."""
    v = entry.get("caption")
    if isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v):
        return "\n".join(v)
    return _string(entry, "caption", where, what, line)


def _qid(entry: Any, where: Path, line: int) -> str:
    if not isinstance(entry, dict):
        raise UserError("the line is not a JSON object", where, line)
    q = entry.get("question_id")
    if isinstance(q, bool) or not isinstance(q, (int, str)) or (isinstance(q, str) and not q):
        raise UserError(f"'question_id' must be an integer or a non-empty string, got {q!r}", where, line)
    return str(q)


class _Images:
    """Image files inside one folder, checked once and hashed once."""

    def __init__(self, folder: Path, hint: str):
        self.folder, self.hint = folder, hint
        self.seen: dict[str, tuple[Path, str]] = {}

    def get(self, name: str, where: Path, what: str, line: int | None = None) -> tuple[Path, str]:
        if name not in self.seen:
            p = path_inside(self.folder, name, where, line)
            if not p.is_file():
                raise UserError(f"{what}: no image file {name} in {self.folder} ({self.hint})", where, line)
            self.seen[name] = (p, _sha256(p))
        return self.seen[name]


def load_llava_bench(questions: Path, answers: Path, context: Path, images: Path, hint: str = "") -> list[Sample]:
    """LLaVA-Bench (In-the-Wild) in its published files; sample ids are the question ids."""
    refs: dict[str, str] = {}
    for line, a in iter_jsonl(answers):
        qid = _qid(a, answers, line)
        if qid in refs:
            raise UserError(f"question {qid} has two reference answers", answers, line)
        refs[qid] = _string(a, "text", answers, f"question {qid}", line)
    captions: dict[str, str] = {}
    for line, c in iter_jsonl(context):
        if not isinstance(c, dict):
            raise UserError("the line is not a JSON object", context, line)
        image = _string(c, "image", context, f"context {c.get('id')!r}", line)
        captions[image] = _caption(c, context, f"context for {image}", line)
    imgs = _Images(images, hint)
    out: list[Sample] = []
    seen: set[str] = set()
    for line, q in iter_jsonl(questions):
        qid = _qid(q, questions, line)
        what = f"question {qid}"
        if qid in seen:
            raise UserError(f"{what} appears twice", questions, line)
        seen.add(qid)
        image = _string(q, "image", questions, what, line)
        text = _string(q, "text", questions, what, line)
        category = _string(q, "category", questions, what, line)
        if qid not in refs:
            raise UserError(f"{what} has no reference answer in {answers.name}", questions, line)
        if image not in captions:
            raise UserError(f"{what}: its image {image} has no caption in {context.name}", questions, line)
        path, sha = imgs.get(image, questions, what, line)
        out.append(
            Sample(
                id=qid,
                images=[ImageRef.from_path(path)],
                fields={"question": text},
                references=[refs[qid]],
                meta={
                    "question": text,
                    "category": category,
                    "image": image,
                    "image_sha256": sha,
                    "caption": captions[image],
                },
            )
        )
    if not out:
        raise UserError("no questions", questions)
    return out


def load_mmvet(path: Path, images: Path, hint: str = "") -> list[Sample]:
    """MM-Vet's ``mm-vet.json`` with its images; sample ids are the keys (``v1_0`` ...)."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not doc:
        raise UserError(
            'expected MM-Vet\'s JSON: one object {"<id>": {"imagename", "question", "answer", "capability"}}', path
        )
    imgs = _Images(images, hint)
    out: list[Sample] = []
    for qid, q in doc.items():
        what = f"question {qid}"
        if not isinstance(q, dict):
            raise UserError(f"{what} is not an object", path)
        image = _string(q, "imagename", path, what)
        question = _string(q, "question", path, what)
        answer = _string(q, "answer", path, what)
        caps = q.get("capability")
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c for c in caps):
            raise UserError(f"{what}: 'capability' must be a non-empty list of strings", path)
        img, sha = imgs.get(image, path, what)
        out.append(
            Sample(
                id=qid,
                images=[ImageRef.from_path(img)],
                fields={"question": question},
                references=[answer],
                meta={
                    "question": question,
                    "capabilities": sorted(set(caps)),
                    "image": image,
                    "image_sha256": sha,
                },
            )
        )
    return out
