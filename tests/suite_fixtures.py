"""Tiny official-format data for the flickr30k, textvqa and vizwiz tasks, written under one data root in
each task's fixed layout (``mmgpt-eval data check`` finds them there; tests also pass the same files as
flags). Images are drawn with PIL: a coloured shape on white, with a word on it for TextVQA.

VQA answers are lower-case words with no punctuation, articles or number words, and the 10 answers of
every question disagree: every VQA normalisation mode leaves them as they are and normalises the
prediction, so a test can score predictions with the plain leave-one-out formula.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 200, 20)}
WORDS = ["stop", "open", "sale", "exit", "taxi", "cafe"]
SHAPES = ["circle", "square"]


def draw_image(path: Path, colour: str, shape: str = "circle", word: str | None = None, size: int = 64) -> None:
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    box = (size // 6, size // 4, size - size // 6, size - size // 12)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour])
    if word:
        d.text((size // 6, 2), word, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=90)


def ten(main: str, second: str, third: str) -> list[str]:
    """Ten crowd answers that disagree: 7 x main, 2 x second, 1 x third."""
    return [main] * 7 + [second] * 2 + [third]


# ------------------------------------------------------------------------------------------ flickr30k
def make_flickr30k(root: Path) -> dict[str, Path]:
    """``<root>/flickr30k/dataset_flickr30k.json`` (Karpathy format: 4 test, 2 train, 1 val image, 5
    sentences each) and ``<root>/flickr30k/flickr30k-images/<photo id>.jpg``."""
    folder = root / "flickr30k"
    images_dir = folder / "flickr30k-images"
    entries = []
    sentid = 0
    plan = [
        ("test", "red", "circle"),
        ("test", "blue", "square"),
        ("test", "green", "circle"),
        ("test", "yellow", "square"),
        ("train", "blue", "circle"),
        ("train", "red", "square"),
        ("val", "green", "square"),
    ]
    for i, (split, colour, shape) in enumerate(plan):
        filename = f"{1000092795 + 7 * i}.jpg"
        draw_image(images_dir / filename, colour, shape)
        raws = [
            f"A {colour} {shape} on a white background.",
            f"a {shape} that is {colour}",
            f"One {colour} {shape} in the middle of the picture.",
            f"A simple {colour} shape.",
            f"The {shape} is {colour} and the background is white.",
        ]
        sentences = []
        for raw in raws:
            sentences.append({"tokens": raw.lower().strip(".").split(), "raw": raw, "imgid": i, "sentid": sentid})
            sentid += 1
        entries.append(
            {
                "sentids": [s["sentid"] for s in sentences],
                "imgid": i,
                "sentences": sentences,
                "split": split,
                "filename": filename,
            }
        )
    kp = folder / "dataset_flickr30k.json"
    kp.write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    return {
        "karpathy_json": kp,
        "images": images_dir,
        "test_ids": [Path(e["filename"]).stem for e in entries if e["split"] == "test"],
    }


# ------------------------------------------------------------------------------------------ textvqa
def _textvqa_entry(qid: int, image_id: str, question: str, answers: list[str], set_name: str) -> dict:
    return {
        "question": question,
        "image_id": image_id,
        "image_classes": ["Sign"],
        "flickr_original_url": f"https://farm1.staticflickr.com/1/{image_id}_o.jpg",
        "flickr_300k_url": f"https://c1.staticflickr.com/1/{image_id}_z.jpg",
        "image_width": 64,
        "image_height": 64,
        "answers": answers,
        "question_tokens": question.rstrip("?").split(),
        "question_id": qid,
        "set_name": set_name,
    }


def make_textvqa(root: Path) -> dict[str, Path]:
    """``<root>/textvqa/TextVQA_0.5.1_val.json`` (6 questions on 4 images), ``TextVQA_0.5.1_train.json``
    (3 questions on 2 images), ``train_images/<image_id>.jpg``, and OpenFlamingo's VQAv2-format
    conversion of the val file (``val_questions_vqa_format.json`` / ``val_annotations_vqa_format.json``)."""
    folder = root / "textvqa"
    images = folder / "train_images"
    docs = {}
    qid = 34602
    for set_name, n_images, offset in (("val", 4, 0), ("train", 2, 4)):
        data = []
        for i in range(offset, offset + n_images):
            image_id = f"{0xA1B2C3D4E5F60000 + 17 * i:016x}"
            colour, word = list(COLOURS)[i % 4], WORDS[i]
            draw_image(images / f"{image_id}.jpg", colour, SHAPES[i % 2], word)
            # the tiny MultiModal-GPT names the shape: partial credit (2 of 10 answers) on some questions
            data.append(
                _textvqa_entry(
                    qid,
                    image_id,
                    "what word is written on the sign?",
                    ten(word, "circle" if i % 2 == 0 else "rectangle", WORDS[(i + 1) % len(WORDS)]),
                    set_name,
                )
            )
            qid += 1
            if i % 2 == 0:
                data.append(
                    _textvqa_entry(qid, image_id, "what color is the shape?", ten(colour, "yes", "no"), set_name)
                )
                qid += 1
        docs[set_name] = {"dataset_type": set_name, "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data}
    val, train = folder / "TextVQA_0.5.1_val.json", folder / "TextVQA_0.5.1_train.json"
    val.write_text(json.dumps(docs["val"]))
    train.write_text(json.dumps(docs["train"]))
    questions = {
        "questions": [
            {"question": e["question"], "image_id": e["image_id"], "question_id": e["question_id"]}
            for e in docs["val"]["data"]
        ]
    }
    annotations = {
        "annotations": [
            {
                "question_id": e["question_id"],
                "image_id": e["image_id"],
                "question_type": "none of the above",
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(e["answers"])
                ],
                "multiple_choice_answer": e["answers"][0],
            }
            for e in docs["val"]["data"]
        ]
    }
    qp, ap = folder / "val_questions_vqa_format.json", folder / "val_annotations_vqa_format.json"
    qp.write_text(json.dumps(questions))
    ap.write_text(json.dumps(annotations))
    return {
        "val_json": val,
        "train_json": train,
        "images": images,
        "questions": qp,
        "annotations": ap,
        "answers": {str(e["question_id"]): e["answers"] for e in docs["val"]["data"]},
    }


# ------------------------------------------------------------------------------------------ vizwiz
def make_vizwiz(root: Path) -> dict[str, Path]:
    """``<root>/vizwiz/val.json`` (5 questions, one per image, every answer type, one unanswerable),
    ``train.json`` (3), and the ``val/`` and ``train/`` image folders."""
    folder = root / "vizwiz"
    val_plan = [
        ("what color is this?", "red", ten("red", "yes", "pink"), "other", 1),
        ("is this a circle?", "blue", ten("yes", "no", "circle"), "yes/no", 1),
        ("how many shapes are there?", "green", ten("1", "2", "no"), "number", 1),
        ("what is written on this box?", "yellow", ten("unanswerable", "yes", "no"), "unanswerable", 0),
        ("what shape is this?", "blue", ten("square", "yes", "circle"), "other", 1),
    ]
    train_plan = [
        ("what color is this?", "green", ten("green", "yes", "blue"), "other", 1),
        ("is this a square?", "red", ten("no", "yes", "square"), "yes/no", 1),
        ("what does this say?", "yellow", ten("unanswerable", "no", "yes"), "unanswerable", 0),
    ]
    out: dict = {}
    for split, plan in (("val", val_plan), ("train", train_plan)):
        entries = []
        for i, (question, colour, answers, atype, answerable) in enumerate(plan):
            image = f"VizWiz_{split}_{i:08d}.jpg"
            draw_image(folder / split / image, colour, SHAPES[i % 2])
            confidences = ["yes", "maybe", "no"]
            entries.append(
                {
                    "image": image,
                    "question": question,
                    "answerable": answerable,
                    "answer_type": atype,
                    "answers": [{"answer": a, "answer_confidence": confidences[j % 3]} for j, a in enumerate(answers)],
                }
            )
        p = folder / f"{split}.json"
        p.write_text(json.dumps(entries))
        out[f"{split}_entries"] = entries
    return {
        "annotations": folder / "val.json",
        "images": folder / "val",
        "train_annotations": folder / "train.json",
        "train_images": folder / "train",
        "answers": {Path(e["image"]).stem: [a["answer"] for a in e["answers"]] for e in out["val_entries"]},
        "entries": {Path(e["image"]).stem: e for e in out["val_entries"]},
    }


def make_suite_data_root(root: Path) -> dict[str, dict]:
    """All three tasks' data under ``root`` in their fixed layouts."""
    return {"root": root, "flickr30k": make_flickr30k(root), "textvqa": make_textvqa(root), "vizwiz": make_vizwiz(root)}
