"""Reading caption data sets: Karpathy's split files (``dataset_coco.json``, ``dataset_flickr30k.json``)
and COCO captions annotation files, with their image folders. A sample's references are its reference
captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_json
from .fields import ident, text
from .paths import inside as path_inside
from .sample import ImageRef, Sample
from .vqa_files import index_images

FLICKR30K_HINT = "`mmgpt-eval data check --tasks flickr30k` lists what is missing and where to get it"


def load_coco_karpathy(path: Path, images: Path, split: str) -> list[Sample]:
    """One split of Karpathy's ``dataset_coco.json``; images at ``<images>/<filepath>/<filename>`` or
    ``<images>/<filename>``, keyed ``coco:<cocoid>``."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise UserError('expected Karpathy dataset_coco.json: {"images": [...]}', path)
    out = []
    for i, im in enumerate(doc["images"]):
        for k in ("split", "filename", "sentences"):
            if k not in im:
                raise UserError(f"image entry {i} lacks {k!r}", path)
        if im["split"] != split:
            continue
        iid = ident(im.get("cocoid", im.get("imgid", i)), "cocoid", path, f"image entry {i}")
        where = f"image entry {i} (cocoid {iid})"
        text(im["filename"], "filename", path, where)
        text(im.get("filepath", ""), "filepath", path, where)
        if not isinstance(im["sentences"], list):
            raise UserError(f"{where}: 'sentences' must be a list", path)
        for j, s in enumerate(im["sentences"]):
            text(s["raw"] if isinstance(s, dict) and "raw" in s else s, "raw", path, f"{where}, sentence {j}")
        candidates = [
            path_inside(images, str(Path(im.get("filepath", "")) / im["filename"]), path),
            path_inside(images, im["filename"], path),
        ]  # data files cannot point elsewhere on disk
        img = next((c for c in candidates if c.is_file()), None)
        if img is None:
            raise UserError(f"image file {im['filename']} not found under the image folder", images)
        refs = [s["raw"] if isinstance(s, dict) else str(s) for s in im["sentences"]]
        out.append(
            Sample(
                id=str(iid),
                images=[ImageRef(key=f"coco:{iid}", path=str(img))],
                fields={},
                references=refs,
                meta={"image_id": iid, "filename": im["filename"]},
            )
        )
    return out


def load_coco_captions(path: Path, images: Path) -> list[Sample]:
    """A COCO captions annotation file (``{"images", "annotations"}``), images found by file name or by
    the trailing number of their name."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise UserError('expected a COCO captions file: {"images": [...], "annotations": [...]}', path)
    files = {im["id"]: im.get("file_name") for im in doc.get("images", []) if isinstance(im, dict) and "id" in im}
    refs: dict[Any, list[str]] = {}
    for i, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict) or "image_id" not in a or "caption" not in a:
            raise UserError(f"annotation {i} lacks image_id/caption", path)
        iid = ident(a["image_id"], "image_id", path, f"annotation {i}")
        text(a["caption"], "caption", path, f"annotation {i} (image_id {iid})")
        refs.setdefault(a["image_id"], []).append(a["caption"])
    by_number = index_images(images)
    out = []
    for iid in sorted(refs):
        name = files.get(iid)
        img = images / name if name and (images / name).is_file() else by_number.get(int(iid))
        if img is None:
            raise UserError(f"no image file for image_id {iid}", images)
        out.append(
            Sample(
                id=str(iid), images=[ImageRef.from_path(img)], fields={}, references=refs[iid], meta={"image_id": iid}
            )
        )
    return out


def load_flickr30k_karpathy(path: Path, images: Path, split: str, limit: int | None = None) -> list[Sample]:
    """The samples of one split of a Karpathy ``dataset_flickr30k.json`` (the first ``limit`` of them)."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise UserError('expected Karpathy dataset_flickr30k.json: {"images": [...]}', path)
    out: list[Sample] = []
    seen: dict[str, int] = {}
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict):
            raise UserError(f"image entry {i} is not an object", path)
        for k in ("split", "filename", "sentences"):
            if k not in im:
                raise UserError(f"image entry {i} lacks {k!r}", path)
        if im["split"] != split:
            continue
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(im["filename"], str) or not im["filename"]:
            raise UserError(f"image entry {i}: 'filename' must be a non-empty string", path)
        sid = Path(im["filename"]).stem
        if sid in seen:
            raise UserError(f"image entries {seen[sid]} and {i} share the file name {im['filename']!r}", path)
        seen[sid] = i
        sentences = im["sentences"]
        if not isinstance(sentences, list) or not sentences:
            raise UserError(f"image entry {i} ({im['filename']}): 'sentences' must be a non-empty list", path)
        refs = []
        for j, s in enumerate(sentences):
            raw = s.get("raw") if isinstance(s, dict) else s
            if not isinstance(raw, str):
                raise UserError(f"image entry {i} ({im['filename']}): sentence {j} has no 'raw' string", path)
            refs.append(raw)
        img = path_inside(images, im["filename"], path)  # data files cannot point elsewhere on disk
        if not img.is_file():
            raise UserError(f"image file {im['filename']} not found under the image folder ({FLICKR30K_HINT})", images)
        out.append(
            Sample(
                id=sid,
                images=[ImageRef(key=f"flickr30k:{sid}", path=str(img))],
                fields={},
                references=refs,
                meta={"image_id": sid, "imgid": im.get("imgid"), "filename": im["filename"]},
            )
        )
    return out
