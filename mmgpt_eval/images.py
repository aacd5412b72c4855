"""Opening images: a path, a PIL image or an ImageRef; and re-opening the image a sample record names
by its key (reports, galleries). No torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from .errors import UserError


def open_image(img: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, an object with ``open()`` (an ImageRef) or a path."""
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    if not isinstance(img, (str, Path)) and callable(getattr(img, "open", None)):
        return img.open()  # an ImageRef (path or procedural loader)
    try:
        with Image.open(img) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise UserError("image not found", img) from None
    except IsADirectoryError:
        raise UserError("image is a directory, expected an image file", img) from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image ({e})", img) from None


def open_image_key(key: str) -> Image.Image | None:
    """Re-open an image from the key a sample record stores: a file path, or ``easyvqa:<split>:<id>``,
    ``counting:<seed>:<index>``, ``blank:<size>:white``. ``None`` if it is gone or unreadable."""
    try:
        if key.startswith("easyvqa:"):
            from .data.dialog_spec import ImageRef as ProbeRef, resolve_image

            _, split, iid = key.split(":")
            return resolve_image(ProbeRef(source="easyvqa", split=split, image_id=int(iid)))
        if key.startswith("counting:"):
            from .data.counting_images import make_counting_item

            _, seed, index = key.split(":")
            return make_counting_item(int(seed), int(index)).image()
        if key.startswith("blank:"):
            from .data.dialog_spec import blank_image

            return blank_image(int(key.split(":")[1]))
        p = Path(key[len("path:"):] if key.startswith("path:") else key)
        if p.is_file():
            with Image.open(p) as im:
                return im.convert("RGB")
    except (OSError, ValueError, UserError):
        return None
    return None
