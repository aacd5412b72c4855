"""Reading VizWiz VQA: the official annotations (a list of ``{"image": "VizWiz_val_00000000.jpg",
"question", "answers": [10 x {"answer", "answer_confidence"}], "answer_type", "answerable"}``) and
their image folder. Sample ids are the image file names without ``.jpg`` (one question per image)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..io import read_json
from .paths import inside as path_inside
from .sample import ImageRef, Sample

HINT = "`mmgpt-eval data check --tasks vizwiz` lists what is missing and where to get it"
ANSWERABLE = {1: "answerable", 0: "unanswerable"}  # the annotations' flag -> its breakdown label


def load_vizwiz(path: Path, images: Path, limit: int | None = None) -> list[Sample]:
    """Official VizWiz VQA annotations (the first ``limit`` entries) with their images."""
    doc = read_json(path)
    if not isinstance(doc, list):
        raise UserError(
            'expected the official VizWiz VQA annotations: a list of {"image", "question", "answers", ...}', path
        )
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
            raise UserError(
                f"entry {i} ({image}) has no 'answers' (the test split has no public answers; evaluate the val split)",
                path,
            )
        answers = (
            [d.get("answer") if isinstance(d, dict) else None for d in q["answers"]]
            if isinstance(q["answers"], list)
            else []
        )
        if not answers or not all(isinstance(a, str) for a in answers):
            raise UserError(
                f"entry {i} ({image}): 'answers' must be a non-empty list of {{\"answer\": string}} objects", path
            )
        sid = Path(image).stem
        if sid in seen:
            raise UserError(
                f"entries {seen[sid]} and {i} share the image {image!r} (sample ids are the image names)", path
            )
        seen[sid] = i
        img = path_inside(images, image, path)
        if not img.is_file():
            raise UserError(f"no image file {image} for entry {i} ({HINT})", images)
        answerable = q.get("answerable")
        out.append(
            Sample(
                id=sid,
                images=[ImageRef.from_path(img)],
                fields={"question": question},
                references=answers,
                meta={
                    "question_id": sid,
                    "image": image,
                    "answer_type": q.get("answer_type"),
                    "answerable": answerable if answerable in ANSWERABLE else None,
                },
            )
        )
    return out
