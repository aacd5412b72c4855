"""Writes the README's example inputs under examples/ (run from the repository root):

    python examples/make_examples.py

Everything is derived from a few easy-VQA test images (the PyPI package ``easy-vqa``, MIT licence,
a dependency of mmgpt-eval) and the embedded tiny MultiModal-GPT (``tiny-mmgpt``), so the files are
small and the example commands give meaningful answers offline:

- ``data/``: a data root (``--data-root examples/data``) with tiny VQAv2-format (``vqav2/``) and
  Karpathy-format COCO (``coco/``) sets over four images;
- ``score/``: COCO captions annotations and the tiny MultiModal-GPT's predictions in the official
  results formats, the inputs of ``mmgpt-eval score``;
- ``predict/``: ``cases.jsonl`` for ``mmgpt-eval predict`` and its images;
- ``checkpoints/checkpoint_0.pt``: the shipped tiny-mmgpt adapter in MultiModal-GPT's trainer layout
  (``module.``-prefixed LoRA keys, ``tuning_config``) with the base model's spec stored in it;
- ``lmms_eval/``: two local lmms-eval tasks (``--include_path examples/lmms_eval``) and their data.

The output is deterministic: running it again rewrites the same bytes.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# easy-VQA test images used by the VQAv2/COCO examples, and their image ids there
IMAGES = {0: 100, 1: 101, 7: 107, 11: 111}
QUESTIONS_PER_IMAGE = 4
# lmms-eval tasks: the first 12 easy-VQA test questions
LMMS_DOCS = 12
LMMS_CHOICES = {
    "shape": ["circle", "rectangle", "triangle"],
    "yesno": ["yes", "no"],
    "color": ["red", "green", "blue", "black", "gray", "teal", "brown", "yellow"],
}
# VQAv2's question types that easy-VQA questions start with (the rest: "none of the above")
VQA_QUESTION_TYPES = ("what is the color of the", "what color is the", "what is the", "is there a", "does the", "is a")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _easyvqa() -> tuple[dict[int, list[tuple[str, str]]], list[tuple[str, str, int]], list[str]]:
    import easy_vqa

    qs, ans, ids = easy_vqa.get_test_questions()
    by_image: dict[int, list[tuple[str, str]]] = {}
    for q, a, i in zip(qs, ans, ids):
        by_image.setdefault(i, []).append((q, a))
    return by_image, list(zip(qs, ans, ids)), easy_vqa.get_test_image_paths()


def _shape_and_colour(questions: list[tuple[str, str]]) -> tuple[str, str]:
    """What an easy-VQA image shows, read off its questions ("what is the red shape?" -> triangle)."""
    shape = colour = None
    for q, a in questions:
        m = re.fullmatch(r"what (?:is the color of|color is) the (\w+)\?", q)
        if m and m.group(1) != "shape":
            shape, colour = m.group(1), a
        m = re.fullmatch(r"what is the (\w+) shape\?", q)
        if m:
            shape, colour = a, m.group(1)
        m = re.fullmatch(r"what (?:is the color of|color is) the shape\?", q)
        if m:
            colour = a
        if q in ("what shape is present?", "what shape does the image contain?", "what shape is in the image?"):
            shape = a
    assert shape and colour, questions
    return shape, colour


def _answers(k: int, gold: str) -> list[str]:
    """Ten annotator answers: unanimous for most questions, a 7-3 split for every third one."""
    if k % 3 != 2:
        return [gold] * 10
    other = {"yes": "no", "no": "yes"}.get(gold, "unsure")
    return [gold] * 7 + [other] * 3


def _question_type(q: str) -> str:
    return next((t for t in VQA_QUESTION_TYPES if q.startswith(t + " ")), "none of the above")


def write_data_root(by_image: dict[int, list[tuple[str, str]]], paths: list[str]) -> None:
    """examples/data: vqav2/ (official question and annotation files) and coco/ (Karpathy split)."""
    root = HERE / "data"
    questions, annotations, karpathy, captions_images, captions = [], [], [], [], []
    for ev_id, image_id in IMAGES.items():
        name = f"COCO_val2014_{image_id:012d}.png"
        for folder in (root / "vqav2" / "val2014", root / "coco" / "val2014"):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[ev_id], folder / name)
        for k, (q, a) in enumerate(by_image[ev_id][:QUESTIONS_PER_IMAGE]):
            qid = image_id * 1000 + k
            questions.append({"image_id": image_id, "question": q, "question_id": qid})
            answers = _answers(k, a)
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": _question_type(q),
                    "answer_type": "yes/no" if a in ("yes", "no") else "other",
                    "multiple_choice_answer": a,
                    "answers": [
                        {"answer": x, "answer_confidence": "yes", "answer_id": j + 1} for j, x in enumerate(answers)
                    ],
                }
            )
        shape, colour = _shape_and_colour(by_image[ev_id])
        refs = [
            f"A {colour} {shape} on a plain background.",
            f"A single {colour} {shape}.",
            f"A simple drawing of a {colour} {shape}.",
            f"One {shape} coloured {colour}.",
            f"There is a {colour} {shape} in the picture.",
        ]
        karpathy.append(
            {
                "filepath": "val2014",
                "filename": name,
                "imgid": len(karpathy),
                "cocoid": image_id,
                "split": "test",
                "sentences": [{"raw": c, "tokens": c.lower().rstrip(".").split()} for c in refs],
            }
        )
        captions_images.append({"id": image_id, "file_name": name, "height": 64, "width": 64})
        captions += [{"image_id": image_id, "id": image_id * 10 + j, "caption": c} for j, c in enumerate(refs)]
    meta = {
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "license": "easy-VQA images (MIT), see examples/README.md",
    }
    _write_json(root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json", {**meta, "questions": questions})
    _write_json(root / "vqav2" / "v2_mscoco_val2014_annotations.json", {**meta, "annotations": annotations})
    _write_json(root / "coco" / "dataset_coco.json", {"dataset": "coco", "images": karpathy})
    _write_json(
        HERE / "score" / "captions_val2014.json",
        {"info": {"description": meta["license"]}, "images": captions_images, "annotations": captions},
    )


def write_predictions() -> None:
    """examples/score/*_predictions.json: the tiny MultiModal-GPT's answers and captions on the example
    data root, in the official results formats ``[{"question_id", "answer"}]`` and ``[{"image_id", "caption"}]``."""
    import mmgpt_eval

    with tempfile.TemporaryDirectory() as tmp:
        res = mmgpt_eval.evaluate(
            model="tiny-openflamingo",
            ckpt="tiny-mmgpt",
            tasks=["vqav2", "coco"],
            data_root=str(HERE / "data"),
            output_dir=tmp,
            progress=False,
            report=False,
        )
        vqa = [{"question_id": int(r.id), "answer": r.prediction} for r in res.records("vqav2")]
        coco = [{"image_id": int(r.id), "caption": r.prediction} for r in res.records("coco")]
    _write_json(HERE / "score" / "vqav2_predictions.json", sorted(vqa, key=lambda p: p["question_id"]))
    _write_json(HERE / "score" / "coco_predictions.json", sorted(coco, key=lambda p: p["image_id"]))


def write_predict_cases(by_image: dict[int, list[tuple[str, str]]], paths: list[str]) -> None:
    """examples/predict: questions rendered through --template (default mmgpt), a raw prompt in
    OpenFlamingo's VQA form, and a raw two-image MultiModal-GPT prompt; image paths are relative to
    the cases file."""
    out = HERE / "predict"
    (out / "images").mkdir(parents=True, exist_ok=True)
    for ev_id in (0, 7):
        shutil.copyfile(paths[ev_id], out / "images" / f"easyvqa-{ev_id}.png")
    two = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Image:\n<image><image>\n\n### Instruction:\nwhat is the color of the circle?\n\n"
        "### Response:\n"
    )
    cases = [
        {"id": "red-triangle-shape", "question": "what is the red shape?", "images": ["images/easyvqa-0.png"]},
        {"id": "green-circle-colour", "question": "what color is the circle?", "images": ["images/easyvqa-7.png"]},
        {
            "id": "of-vqa-prompt",
            "prompt": "<image>Question:what is the red shape? Short answer:",
            "images": ["images/easyvqa-0.png"],
        },
        {"id": "two-images", "prompt": two, "images": ["images/easyvqa-0.png", "images/easyvqa-7.png"]},
    ]
    (out / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))


def write_checkpoint() -> None:
    """examples/checkpoints/checkpoint_0.pt: tiny-mmgpt as a MultiModal-GPT trainer file, written by
    the same function ``mmgpt-eval train`` uses."""
    import mmgpt_eval
    from mmgpt_eval.model.export import save_mmgpt_checkpoint

    loaded = mmgpt_eval.load("tiny-openflamingo", "tiny-mmgpt")
    assert loaded.checkpoint is not None and loaded.checkpoint.lora is not None
    out = HERE / "checkpoints" / "checkpoint_0.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_mmgpt_checkpoint(
        loaded.model, loaded.checkpoint.lora, out, kind="trainer", epoch=0, model_spec={"name": "tiny-openflamingo"}
    )


def _lmms_kind(answer: str) -> str:
    return next(k for k, v in LMMS_CHOICES.items() if answer in v)


def _lmms_answers(i: int, gold: str) -> list[str]:
    """Ten VQAv2-style answers per question, in four patterns that exercise the scoring rules."""
    pattern = i % 4
    if pattern == 0:
        return [gold] * 10  # unanimous, already normalised
    if pattern == 1:
        return [gold.capitalize() + "."] * 10  # unanimous, not normalised: the VQA rules differ here
    if pattern == 2:
        return [gold] * 2 + ["something else"] * 8  # disagreement: 2 matches
    return ["the " + gold] * 3 + ["no idea"] * 7  # disagreement, article removed by normalisation


def write_lmms_data(questions: list[tuple[str, str, int]], paths: list[str]) -> None:
    """examples/lmms_eval/data: test.jsonl (read by the datasets library's ``json`` builder) and its
    images; the task YAMLs and utils.py next to it are written by hand."""
    data = HERE / "lmms_eval" / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (q, a, img) in enumerate(questions[:LMMS_DOCS]):
        shutil.copyfile(paths[img], data / f"{img}.png")
        rows.append(
            {
                "question_id": 1000 + i,
                "question": q,
                "answer": a,
                "image": f"{img}.png",
                "answers": [{"answer": x, "answer_id": k + 1} for k, x in enumerate(_lmms_answers(i, a))],
                "choices": LMMS_CHOICES[_lmms_kind(a)],
                "target": LMMS_CHOICES[_lmms_kind(a)].index(a),
            }
        )
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> int:
    by_image, questions, paths = _easyvqa()
    write_data_root(by_image, paths)
    write_predict_cases(by_image, paths)
    write_lmms_data(questions, paths)
    write_checkpoint()
    write_predictions()
    print(f"wrote the examples under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
