"""Readers for the classification benchmarks OpenFlamingo ranks class names on.

* ImageNet-style folders: ``<root>/<synset>/<image>``, read in torchvision ``ImageFolder`` order
  (class folders sorted by name -> class index; within a class, ``os.walk`` sorted, files sorted,
  image extensions only). Class index ``i`` is named ``IMAGENET_CLASSNAMES[i]`` of the installed
  open-flamingo package, as its ``ImageNetDataset`` does -- so a full ``val/`` (1,000 synset folders
  named by WordNet id) gets the right names, and a folder with fewer classes gets the first names in
  that order, exactly as OpenFlamingo would label it.
* Hateful Memes: ``train.jsonl`` / ``dev_seen.jsonl`` / ``test_seen.jsonl`` lines with ``id``, ``img``
  (``img/01235.png``), ``label`` (1 = hateful) and ``text`` (the meme's OCR text); images found by
  the file name of ``img`` in the image folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from ..io import iter_jsonl
from .fields import ident, text
from .sample import ImageRef, Sample

# torchvision.datasets.folder.IMG_EXTENSIONS (compared lower-case, as torchvision does)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
HATEFUL_MEMES_CLASSES = ("no", "yes")  # label 0, 1 (open_flamingo.eval.classification_utils.HM_CLASSNAMES)


def imagenet_classnames() -> list[str]:
    """The 1,000 ImageNet class names the installed open-flamingo package ships (its eval's list)."""
    try:
        from open_flamingo.eval.classification_utils import IMAGENET_CLASSNAMES
    except ImportError as e:  # pragma: no cover - open-flamingo is part of every install
        raise UserError(
            f"ImageNet class names come from open-flamingo's eval package, which failed to import: {e}"
        ) from e
    return list(IMAGENET_CLASSNAMES)


def image_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """``(classes, [(image path, class index)])`` in torchvision ``ImageFolder`` order."""
    root = Path(root)
    if not root.is_dir():
        raise UserError("image folder not found", root)
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise UserError("no class folders (expected <folder>/<synset>/<image>)", root)
    items: list[tuple[Path, int]] = []
    empty = []
    for index, cls in enumerate(classes):
        n = len(items)
        for dirpath, _, files in sorted(os.walk(root / cls, followlinks=True)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    items.append((Path(dirpath) / f, index))
        if len(items) == n:
            empty.append(cls)
    if empty:
        raise UserError(
            f"class folders without images: {', '.join(empty[:5])}" + (" ..." if len(empty) > 5 else ""), root
        )
    return classes, items


def load_imagenet_folder(root: str | Path, names: list[str]) -> list[Sample]:
    """Samples of an ImageNet-style folder; the reference is the class name at the folder's index."""
    classes, items = image_folder(root)
    if len(classes) > len(names):
        raise UserError(f"{len(classes)} class folders but only {len(names)} class names", root)
    root = Path(root)
    return [
        Sample(
            id=p.relative_to(root).as_posix(),
            images=[ImageRef.from_path(p)],
            fields={},
            references=names[i],
            meta={"class_index": i, "synset": classes[i]},
        )
        for p, i in items
    ]


def load_hateful_memes(annotations: str | Path, images: str | Path) -> list[Sample]:
    """Samples of a Hateful Memes jsonl file (labels required)."""
    images = Path(images)
    if not images.is_dir():
        raise UserError("image folder not found", images)
    out = []
    for line, obj in iter_jsonl(annotations):
        if not isinstance(obj, dict) or not {"id", "img", "label", "text"} <= set(obj):
            raise UserError("expected a Hateful Memes line with id, img, label and text", annotations, line)
        if obj["label"] not in (0, 1):
            raise UserError(f"label must be 0 or 1, got {obj['label']!r}", annotations, line)
        sid = ident(obj["id"], "id", annotations, "entry", line)
        text(obj["text"], "text", annotations, f"entry (id {sid})", line)
        text(obj["img"], "img", annotations, f"entry (id {sid})", line)
        name = str(obj["img"]).replace("\\", "/").split("/")[-1]
        if not (images / name).is_file():
            raise UserError(f"image {name} not found in {images}", annotations, line)
        out.append(
            Sample(
                id=str(obj["id"]),
                images=[ImageRef.from_path(images / name)],
                fields={"ocr": str(obj["text"])},
                references=HATEFUL_MEMES_CLASSES[obj["label"]],
                meta={"label": obj["label"]},
            )
        )
    return out
