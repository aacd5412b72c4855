"""The counting task's samples: the embedded procedural set (:mod:`mmgpt_eval.data.counting_images`),
TallyQA-style files ``[{"image", "question", "answer": int}]`` (a JSON list, or JSONL), and the "how
many" questions with a numeric answer of VQAv2-format files (ground truth: ``multiple_choice_answer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..io import iter_jsonl, read_json
from .counting_images import generate_counting_set
from .fields import ident, text
from .paths import inside as path_inside
from .sample import ImageRef, Sample
from .vqa_files import load_vqa_files


def procedural_samples(n: int, seed: int) -> list[Sample]:
    """Items ``0 .. n - 1`` of the procedural set ``seed``, images keyed ``counting:<seed>:<index>``."""
    out = []
    for item in generate_counting_set(n=n, seed=seed):
        out.append(
            Sample(
                id=item.id,
                images=[ImageRef(key=f"counting:{item.seed}:{item.index}", loader=item.image)],
                fields={"question": item.question},
                references=item.answer,
                meta={"asked": list(item.asked), "n_shapes": len(item.shapes)},
            )
        )
    return out


def load_tallyqa(path: Path, images: Path | None = None) -> list[Sample]:
    """A TallyQA-style file; image paths are relative to ``images`` (default: the file's folder)."""
    if not path.is_file():
        raise UserError("TallyQA file not found", path)
    rows: list[tuple[int | None, Any]]
    try:
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace").lstrip()
    except OSError as e:
        raise UserError(f"cannot read ({e.strerror or type(e).__name__})", path) from None
    if head.startswith("["):
        rows = [(None, r) for r in read_json(path)]
    else:
        rows = list(iter_jsonl(path))
    base = Path(images if images is not None else path.parent)
    out = []
    for i, (line, r) in enumerate(rows):
        if not isinstance(r, dict) or not {"image", "question", "answer"} <= set(r):
            raise UserError(f"entry {i} needs image, question and answer", path, line)
        if not isinstance(r["answer"], int) or isinstance(r["answer"], bool) or r["answer"] < 0:
            raise UserError(f"entry {i}: answer must be a non-negative integer", path, line)
        if not isinstance(r["image"], str):
            raise UserError(f"entry {i}: image must be a path string", path, line)
        sid = ident(
            r.get("question_id", r.get("id", i)),
            "question_id" if "question_id" in r else "id",
            path,
            f"entry {i}",
            line,
        )
        text(r["question"], "question", path, f"entry {i} (id {sid})", line)
        img = path_inside(base, r["image"], path, line)  # data files cannot point elsewhere on disk
        if not img.is_file():
            raise UserError(f"entry {i}: image not found: {img}", path, line)
        out.append(
            Sample(
                id=str(sid),
                images=[ImageRef.from_path(img)],
                fields={"question": r["question"]},
                references=int(r["answer"]),
                meta={"source": "tallyqa"},
            )
        )
    return out


def load_vqa_counting(
    questions: Path, annotations: Path, images: Path, parse_count: Callable[[str], int | None]
) -> list[Sample]:
    """The "how many" questions of answer type ``number`` whose ``multiple_choice_answer`` parses to a
    count with ``parse_count`` (the task's answer parser, so the truth is read as the answers are)."""
    samples, _, anns = load_vqa_files(questions, annotations, images)
    mc = {a["question_id"]: a.get("multiple_choice_answer") for a in anns}
    out = []
    for s in samples:
        q = s.fields["question"].lower()
        if s.meta["answer_type"] != "number" or not q.startswith("how many"):
            continue
        truth = parse_count(str(mc.get(s.meta["question_id"], "")))
        if truth is None:
            continue
        out.append(Sample(id=s.id, images=s.images, fields=s.fields, references=truth, meta={"source": "vqav2"}))
    if not out:
        raise UserError("no 'how many' questions with a numeric answer in the VQA files", questions)
    return out
