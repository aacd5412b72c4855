"""Tiny datasets in the official file formats that OpenFlamingo's ``open_flamingo/eval`` reads.

Each writer makes one dataset under ``root`` (images drawn with PIL: a coloured shape on a coloured
background, so that RICES has something to find) and returns a :class:`Fixture` with

* ``data``: the paths as :func:`mmgpt_eval_dev.peers.openflamingo.run_openflamingo_eval` takes them
  (evaluate.py's argument names without the dataset prefix);
* ``mmgpt``: the same files as mmgpt-eval's task options (``--<task>-<key>`` flags;
  :meth:`Fixture.mmgpt_flags` writes them, :data:`MMGPT_TASKS` names the task).

Formats (what evaluate.py / eval_datasets.py / vqa_metric.py / pycocotools read):

* VQAv2 / OK-VQA: questions JSON ``{info, task_type, data_type, data_subtype, license, questions:
  [{image_id, question, question_id}]}``; annotations JSON ``{info, license, data_type, data_subtype,
  annotations: [{question_id, image_id, question_type, answer_type, multiple_choice_answer,
  answers: [10 x {answer, answer_confidence, answer_id}]}]}`` in the questions' order (eval_datasets
  pairs them by index); images ``train2014/COCO_train2014_%012d.jpg`` and ``val2014/COCO_val2014_%012d.jpg``
  (VQADataset asserts the folder name is train2014/val2014/test2015).
* COCO: Karpathy ``dataset_coco.json`` ``{images: [{filepath, filename, imgid, split, sentences:
  [{raw, tokens, imgid, sentid}], sentids, cocoid}], dataset}`` (CaptionDataset: split "train" -> demos,
  "test" -> eval; filepath train2014 -> the train folder, else the val folder) and
  ``annotations/captions_val2014.json`` ``{info, licenses, images, annotations: [{image_id, id,
  caption}], type}`` for the test images.
* Flickr30k: Karpathy ``dataset_flickr30k.json`` (no cocoid; image id = file name stem, a STRING in
  evaluate.py's results) + ``flickr30k_images/`` + a COCO-style captions file whose image ids are those
  strings (pycocotools' ``loadRes`` requires the result ids to be annotation ids).
* Hateful Memes: ``img/<id>.png``, ``train.jsonl`` and ``test_seen.jsonl``, lines ``{id, img, label, text}``.
* ImageNet: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``. ImageNetDataset is a torchvision
  ImageFolder, which numbers the folders in sorted order, and names class ``i`` by
  ``IMAGENET_CLASSNAMES[i]``; the folders are therefore the FIRST synsets of the 1000 in sorted order
  (n01440764 tench, n01443537 goldfish, ...), so that index ``i`` is the real class ``i``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 190, 60),
    "blue": (40, 60, 220),
    "yellow": (235, 220, 40),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
# The first ImageNet-1k synsets in sorted order, with their IMAGENET_CLASSNAMES names.
IMAGENET_FIRST_SYNSETS = (
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
)

MEME_TEXTS = (
    "love your neighbor",
    "look at this cat",
    "nobody likes you",
    "what a sunny day",
    "they are all the same",
    "best friends forever",
    "go back where you came from",
    "morning coffee",
)


@dataclass
class Fixture:
    name: str
    root: Path
    data: dict[str, str]
    mmgpt: dict[str, str] = field(default_factory=dict)
    n_test: int = 0
    n_train: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def mmgpt_flags(self, task: str | None = None) -> list[str]:
        """``mmgpt`` as command-line flags of mmgpt-eval task ``task`` (default: this dataset's task;
        e.g. ``--vqav2-*`` with the OK-VQA files)."""
        task = task or MMGPT_TASKS[self.name]
        return [x for k, v in self.mmgpt.items() for x in (f"--{task}-{k.replace('_', '-')}", v)]


def draw(color: str, shape: str, background: tuple[int, int, int], size: int = 48, jitter: int = 0) -> Image.Image:
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    lo, hi = 8 + jitter, size - 8 - jitter
    if shape == "circle":
        d.ellipse([lo, lo, hi, hi], fill=COLORS[color])
    elif shape == "square":
        d.rectangle([lo, lo, hi, hi], fill=COLORS[color])
    else:
        d.polygon([(size // 2, lo), (lo, hi), (hi, hi)], fill=COLORS[color])
    return img


def _item(rng: random.Random, i: int) -> tuple[str, str, Image.Image]:
    color = list(COLORS)[i % len(COLORS)]
    shape = SHAPES[(i // 2) % len(SHAPES)]
    bg = tuple(rng.randrange(60, 200) for _ in range(3))
    return color, shape, draw(color, shape, bg, jitter=rng.randrange(0, 6))


def _answers(rng: random.Random, main: str, alternatives: list[str]) -> list[dict[str, Any]]:
    """Ten annotator answers: mostly ``main``, a few others (official VQA annotation layout)."""
    words = [main] * 7 + [rng.choice(alternatives) for _ in range(3)]
    rng.shuffle(words)
    return [
        {"answer": w, "answer_confidence": rng.choice(["yes", "maybe"]), "answer_id": k + 1}
        for k, w in enumerate(words)
    ]


# ------------------------------------------------------------------------------------------ VQA
def _write_vqa_split(
    root: Path, split: str, ids: list[int], rng: random.Random, ok_vqa: bool, qid_base: int
) -> tuple[Path, Path, Path]:
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    questions, annotations = [], []
    for n, image_id in enumerate(ids):
        color, shape, img = _item(rng, image_id)
        img.save(img_dir / f"COCO_{split}_{image_id:012d}.jpg", quality=95)
        if n % 2 == 0:
            q, a, qtype, atype, alts = "what color is the shape?", color, "what color is the", "other", list(COLORS)
        else:
            q, a, qtype, atype, alts = f"is there a {shape} in the image?", "yes", "is there a", "yes/no", ["no"]
        qid = qid_base + n
        questions.append({"image_id": image_id, "question": q, "question_id": qid})
        answers = _answers(rng, a, alts)
        ann = {
            "question_id": qid,
            "image_id": image_id,
            "question_type": "other" if ok_vqa else qtype,
            "answer_type": "other" if ok_vqa else atype,
            "multiple_choice_answer": a,
            "answers": answers,
        }
        if ok_vqa:
            ann["confidence"] = 3
            for x in answers:
                x["raw_answer"] = x["answer"]
        annotations.append(ann)
    info = {"description": "tiny fixture in the official format", "version": "2.0", "year": 2017}
    lic = {"name": "fixture", "url": "https://example.invalid"}
    subtype = f"{split}"
    if ok_vqa:
        qname, aname = f"OpenEnded_mscoco_{split}_questions.json", f"mscoco_{split}_annotations.json"
    else:
        qname, aname = f"v2_OpenEnded_mscoco_{split}_questions.json", f"v2_mscoco_{split}_annotations.json"
    qpath, apath = root / qname, root / aname
    qpath.write_text(
        json.dumps(
            {
                "info": info,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "license": lic,
                "data_subtype": subtype,
                "questions": questions,
            }
        )
    )
    apath.write_text(
        json.dumps(
            {"info": info, "license": lic, "data_type": "mscoco", "data_subtype": subtype, "annotations": annotations}
        )
    )
    return img_dir, qpath, apath


def write_vqa(root: Path, *, ok_vqa: bool = False, n_test: int = 12, n_train: int = 24, seed: int = 0) -> Fixture:
    """VQAv2 (or, with ``ok_vqa``, OK-VQA) questions/annotations/images, train and val splits."""
    name = "ok_vqa" if ok_vqa else "vqav2"
    root = Path(root) / name
    rng = random.Random(seed + (7 if ok_vqa else 0))
    test_ids = [100 + 3 * i for i in range(n_test)]
    train_ids = [5000 + 7 * i for i in range(n_train)]
    tr_img, tr_q, tr_a = _write_vqa_split(root, "train2014", train_ids, rng, ok_vqa, qid_base=9_000_000)
    te_img, te_q, te_a = _write_vqa_split(root, "val2014", test_ids, rng, ok_vqa, qid_base=1_000_000)
    data = {
        "train_image_dir_path": str(tr_img),
        "train_questions_json_path": str(tr_q),
        "train_annotations_json_path": str(tr_a),
        "test_image_dir_path": str(te_img),
        "test_questions_json_path": str(te_q),
        "test_annotations_json_path": str(te_a),
    }
    mmgpt = {
        "questions": str(te_q),
        "annotations": str(te_a),
        "images": str(te_img),
        "train_questions": str(tr_q),
        "train_annotations": str(tr_a),
        "train_images": str(tr_img),
    }
    return Fixture(name, root, data, mmgpt, n_test, n_train)


def write_vqav2(root: Path, **kw) -> Fixture:
    return write_vqa(root, ok_vqa=False, **kw)


def write_ok_vqa(root: Path, **kw) -> Fixture:
    return write_vqa(root, ok_vqa=True, **kw)


# ------------------------------------------------------------------------------------------ captions
def _captions(color: str, shape: str) -> list[str]:
    return [
        f"a {color} {shape} on a plain background",
        f"A {color} {shape}.",
        f"a picture of a {color} {shape}",
        f"one {color} {shape} in the middle of the image",
        f"a simple {shape} that is {color}",
    ]


def _karpathy_entry(
    imgid: int,
    filename: str,
    split: str,
    caps: list[str],
    sent_base: int,
    filepath: str | None = None,
    cocoid: int | None = None,
) -> dict[str, Any]:
    sents = [
        {"tokens": c.lower().strip(".").split(), "raw": c, "imgid": imgid, "sentid": sent_base + k}
        for k, c in enumerate(caps)
    ]
    entry: dict[str, Any] = {
        "filename": filename,
        "imgid": imgid,
        "split": split,
        "sentences": sents,
        "sentids": [s["sentid"] for s in sents],
    }
    if filepath is not None:
        entry["filepath"] = filepath
    if cocoid is not None:
        entry["cocoid"] = cocoid
    return entry


def _coco_style(entries: list[tuple[Any, str, list[str]]], description: str) -> dict[str, Any]:
    images, anns = [], []
    for image_id, file_name, caps in entries:
        images.append({"id": image_id, "file_name": file_name, "width": 48, "height": 48, "license": 1})
        for c in caps:
            anns.append({"image_id": image_id, "id": len(anns) + 1, "caption": c})
    return {
        "info": {"description": description, "version": "1.0", "year": 2014},
        "licenses": [{"id": 1, "name": "fixture", "url": "https://example.invalid"}],
        "type": "captions",
        "images": images,
        "annotations": anns,
    }


def write_coco(root: Path, *, n_test: int = 12, n_train: int = 24, seed: int = 1) -> Fixture:
    """Karpathy dataset_coco.json (train/restval/val/test) + captions_val2014.json + train2014/val2014."""
    root = Path(root) / "coco"
    rng = random.Random(seed)
    (root / "train2014").mkdir(parents=True, exist_ok=True)
    (root / "val2014").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    entries, val_entries = [], []
    plan = (
        [("test", "val2014")] * n_test
        + [("train", "train2014")] * n_train
        + [("restval", "val2014"), ("val", "val2014")]
    )
    for imgid, (split, folder) in enumerate(plan):
        cocoid = 200_000 + 11 * imgid
        color, shape, img = _item(rng, imgid)
        fname = f"COCO_{folder}_{cocoid:012d}.jpg"
        img.save(root / folder / fname, quality=95)
        caps = _captions(color, shape)
        entries.append(_karpathy_entry(imgid, fname, split, caps, 10 * imgid, filepath=folder, cocoid=cocoid))
        if folder == "val2014":
            val_entries.append((cocoid, fname, caps))
    kj = root / "dataset_coco.json"
    kj.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    ann = root / "annotations" / "captions_val2014.json"
    ann.write_text(json.dumps(_coco_style(val_entries, "COCO 2014 val captions (fixture)")))
    data = {
        "train_image_dir_path": str(root / "train2014"),
        "val_image_dir_path": str(root / "val2014"),
        "karpathy_json_path": str(kj),
        "annotations_json_path": str(ann),
    }
    mmgpt = {"karpathy_json": str(kj), "images": str(root)}
    return Fixture("coco", root, data, mmgpt, n_test, n_train)


def write_flickr30k(root: Path, *, n_test: int = 12, n_train: int = 24, seed: int = 2) -> Fixture:
    """Karpathy dataset_flickr30k.json + flickr30k_images/ + a COCO-style captions file (string ids)."""
    root = Path(root) / "flickr30k"
    rng = random.Random(seed)
    img_dir = root / "flickr30k_images"
    img_dir.mkdir(parents=True, exist_ok=True)
    entries, coco_entries = [], []
    plan = ["test"] * n_test + ["train"] * n_train + ["val"]
    for imgid, split in enumerate(plan):
        stem = str(1_000_092_795 + 101 * imgid)
        color, shape, img = _item(rng, imgid)
        img.save(img_dir / f"{stem}.jpg", quality=95)
        caps = _captions(color, shape)
        entries.append(_karpathy_entry(imgid, f"{stem}.jpg", split, caps, 5 * imgid))
        coco_entries.append((stem, f"{stem}.jpg", caps))
    kj = root / "dataset_flickr30k.json"
    kj.write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    ann = root / "dataset_flickr30k_coco_style.json"
    ann.write_text(json.dumps(_coco_style(coco_entries, "Flickr30k captions, COCO style (fixture)")))
    data = {"image_dir_path": str(img_dir), "karpathy_json_path": str(kj), "annotations_json_path": str(ann)}
    mmgpt = {"karpathy_json": str(kj), "images": str(img_dir)}
    return Fixture("flickr30k", root, data, mmgpt, n_test, n_train)


# ------------------------------------------------------------------------------------------ classification
def write_hateful_memes(root: Path, *, n_test: int = 12, n_train: int = 24, seed: int = 3) -> Fixture:
    """img/<id>.png + train.jsonl + test_seen.jsonl (both labels in each split)."""
    root = Path(root) / "hateful_memes"
    rng = random.Random(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)

    def split(path: Path, n: int, base: int) -> None:
        lines = []
        for k in range(n):
            mid = base + 17 * k
            _, _, img = _item(rng, mid)
            img.save(root / "img" / f"{mid:05d}.png")
            lines.append(
                json.dumps(
                    {
                        "id": mid,
                        "img": f"img/{mid:05d}.png",
                        "label": k % 2,
                        "text": MEME_TEXTS[(k * 3 + base) % len(MEME_TEXTS)],
                    }
                )
            )
        path.write_text("\n".join(lines) + "\n")

    split(root / "train.jsonl", n_train, 10_000)
    split(root / "test_seen.jsonl", n_test, 60_000)
    data = {
        "image_dir_path": str(root / "img"),
        "train_annotations_json_path": str(root / "train.jsonl"),
        "test_annotations_json_path": str(root / "test_seen.jsonl"),
    }
    mmgpt = {
        "annotations": str(root / "test_seen.jsonl"),
        "images": str(root / "img"),
        "train_annotations": str(root / "train.jsonl"),
    }
    return Fixture("hateful_memes", root, data, mmgpt, n_test, n_train)


def write_imagenet(
    root: Path, *, n_classes: int = 4, test_per_class: int = 3, train_per_class: int = 6, seed: int = 4
) -> Fixture:
    """train/<wnid>/ and val/<wnid>/ for the first ``n_classes`` ImageNet synsets."""
    if not 1 <= n_classes <= len(IMAGENET_FIRST_SYNSETS):
        raise ValueError(f"n_classes must be 1..{len(IMAGENET_FIRST_SYNSETS)}")
    root = Path(root) / "imagenet"
    rng = random.Random(seed)
    colors = list(COLORS)
    for c, (wnid, _) in enumerate(IMAGENET_FIRST_SYNSETS[:n_classes]):
        for split, n in (("train", train_per_class), ("val", test_per_class)):
            d = root / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                bg = tuple(rng.randrange(60, 200) for _ in range(3))
                img = draw(colors[c % len(colors)], SHAPES[c % len(SHAPES)], bg, jitter=rng.randrange(0, 6))
                stem = f"{wnid}_{k + 1}" if split == "train" else f"ILSVRC2012_val_{c * 1000 + k + 1:08d}"
                img.save(d / f"{stem}.JPEG", quality=95)
    classes = [name for _, name in IMAGENET_FIRST_SYNSETS[:n_classes]]
    mmgpt = {"val": str(root / "val"), "train": str(root / "train")}
    return Fixture(
        "imagenet",
        root,
        {"root": str(root)},
        mmgpt,
        n_classes * test_per_class,
        n_classes * train_per_class,
        meta={"class_names": classes},
    )


# the mmgpt-eval task of each dataset
MMGPT_TASKS = {
    "vqav2": "vqav2",
    "ok_vqa": "okvqa",
    "coco": "coco",
    "flickr30k": "flickr30k",
    "hateful_memes": "hatefulmemes",
    "imagenet": "imagenet",
}

WRITERS = {
    "vqav2": write_vqav2,
    "ok_vqa": write_ok_vqa,
    "coco": write_coco,
    "flickr30k": write_flickr30k,
    "hateful_memes": write_hateful_memes,
    "imagenet": write_imagenet,
}


def write_all(root: Path) -> dict[str, Fixture]:
    return {name: writer(Path(root)) for name, writer in WRITERS.items()}
