"""Tiny datasets in the official VQAv2 and COCO formats, written from our own procedural images."""

from __future__ import annotations

import json
from pathlib import Path

from mmgpt_eval.data.counting_images import make_counting_item

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def _image(seed: int, index: int):
    return make_counting_item(seed, index)


def make_vqa_dataset(root: Path, n_images: int = 4, split: str = "val2014") -> dict[str, Path]:
    """VQAv2-format questions/annotations (3 questions per image, 10 answers each) + COCO-named images."""
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    questions, annotations = [], []
    qid = 1000
    for i in range(n_images):
        item = _image(7, i)
        image_id = 100 + i
        (img_dir / f"COCO_{split}_{image_id:012d}.jpg").write_bytes(b"")  # replaced below by a real image
        item.image().save(img_dir / f"COCO_{split}_{image_id:012d}.jpg", format="JPEG", quality=95)
        n = len(item.shapes)
        qa = [
            ("How many shapes are there?", str(n), "number", "how many"),
            ("Is there a shape in the image?", "yes" if n else "no", "yes/no", "is there a"),
            ("What is in the image?", "shapes" if n else "nothing", "other", "what is"),
        ]
        for q, a, atype, qtype in qa:
            questions.append({"image_id": image_id, "question": q, "question_id": qid})
            answers = [a] * 8 + ["2" if a != "2" else "3", "none"]
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": qtype,
                    "answer_type": atype,
                    "multiple_choice_answer": a,
                    "answers": [
                        {"answer": x, "answer_confidence": "yes", "answer_id": j + 1} for j, x in enumerate(answers)
                    ],
                }
            )
            qid += 1
    qp = root / f"v2_OpenEnded_mscoco_{split}_questions.json"
    ap = root / f"v2_mscoco_{split}_annotations.json"
    qp.write_text(json.dumps({"questions": questions, "data_subtype": split}))
    ap.write_text(json.dumps({"annotations": annotations, "data_subtype": split}))
    return {"questions": qp, "annotations": ap, "images": img_dir}


def make_coco_dataset(root: Path, n_images: int = 5) -> dict[str, Path]:
    """Karpathy-style dataset_coco.json (test split) with 5 captions per image + the images."""
    img_dir = root / "val2014"
    img_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n_images):
        item = _image(11, i)
        cocoid = 500 + i
        name = f"COCO_val2014_{cocoid:012d}.jpg"
        item.image().save(img_dir / name, format="JPEG", quality=95)
        kinds = sorted({s.kind for s in item.shapes}) or ["nothing"]
        colours = sorted({s.colour for s in item.shapes}) or ["white"]
        caps = [
            f"a picture with {len(item.shapes)} shapes.",
            f"some {colours[0]} {kinds[0]}s on a white background.",
            f"an image of {' and '.join(kinds)} shapes.",
            "simple coloured shapes on white.",
            f"{len(item.shapes)} small {colours[-1]} objects.",
        ]
        images.append(
            {
                "filepath": "val2014",
                "filename": name,
                "cocoid": cocoid,
                "split": "test",
                "sentences": [{"raw": c, "tokens": c.strip(".").split()} for c in caps],
            }
        )
    # a train image for few-shot demos
    item = _image(11, 99)
    item.image().save(img_dir / "COCO_val2014_000000000999.jpg", format="JPEG", quality=95)
    images.append(
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000000999.jpg",
            "cocoid": 999,
            "split": "train",
            "sentences": [{"raw": "a few shapes.", "tokens": ["a", "few", "shapes"]}] * 5,
        }
    )
    kp = root / "dataset_coco.json"
    kp.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return {"karpathy_json": kp, "images": root}


# ------------------------------------------------------------------------------ judged benchmarks
LLAVA_CATEGORIES = ("conv", "detail", "complex")
MMVET_CAPABILITIES = (["rec"], ["ocr", "math"], ["rec", "know", "gen"], ["spat", "ocr"], ["math"])


def make_llava_bench(root: Path, n_images: int = 3, per_image: int = 2) -> dict[str, Path]:
    """``<root>/llava-bench/``: questions.jsonl, answers_gpt4.jsonl, context.jsonl and images/ as
    LLaVA-Bench (In-the-Wild) publishes them (``per_image`` questions per image, one caption each)."""
    folder = root / "llava-bench"
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    questions, answers, context = [], [], []
    qid = 0
    for i in range(n_images):
        item = _image(23, i)
        name = f"{i + 1:03d}.jpg"
        item.image().save(img_dir / name, format="JPEG", quality=95)
        kinds = sorted({s.kind for s in item.shapes}) or ["nothing"]
        context.append(
            {"id": f"{i + 1:03d}", "image": name, "caption": f"{len(item.shapes)} shapes: {', '.join(kinds)}."}
        )
        for k in range(per_image):
            category = LLAVA_CATEGORIES[qid % len(LLAVA_CATEGORIES)]
            questions.append(
                {"question_id": qid, "image": name, "text": f"Question {k} about picture {i}?", "category": category}
            )
            answers.append(
                {
                    "question_id": qid,
                    "prompt": f"Question {k} about picture {i}?",
                    "text": f"There are {len(item.shapes)} shapes in picture {i}.",
                    "answer_id": f"a{qid}",
                    "model_id": "reference",
                    "metadata": {},
                }
            )
            qid += 1
    paths = {
        "questions": folder / "questions.jsonl",
        "answers": folder / "answers_gpt4.jsonl",
        "context": folder / "context.jsonl",
    }
    for key, rows in (("questions", questions), ("answers", answers), ("context", context)):
        paths[key].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {**paths, "images": img_dir}


def make_mmvet(root: Path, n: int = 5) -> dict[str, Path]:
    """``<root>/mmvet/``: mm-vet.json (one object keyed by ``v1_<i>``) and images/ as MM-Vet publishes them."""
    folder = root / "mmvet"
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    doc = {}
    for i in range(n):
        item = _image(29, i)
        name = f"v1_{i}.png"
        item.image().save(img_dir / name, format="PNG")
        doc[f"v1_{i}"] = {
            "imagename": name,
            "capability": MMVET_CAPABILITIES[i % len(MMVET_CAPABILITIES)],
            "question": f"How many shapes are in picture {i}?",
            "answer": str(len(item.shapes)) if i % 2 else f"{len(item.shapes)} <OR> {len(item.shapes)} shapes",
        }
    path = folder / "mm-vet.json"
    path.write_text(json.dumps(doc, indent=1))
    return {"json": path, "images": img_dir}
