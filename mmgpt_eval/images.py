"""Opening images: a path, a PIL image or an ImageRef; and re-opening the image a sample record names
by its key (reports, galleries), through the key schemes data modules register. No torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

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


# image-key scheme -> opener of the whole key; registered by the data modules that make such keys
_SCHEMES: dict[str, Callable[[str], Image.Image]] = {}


def register_image_key(scheme: str, opener: Callable[[str], Image.Image]) -> None:
    """Let keys ``<scheme>:<args>`` re-open through ``opener(key)`` (an RGB PIL image). Data modules
    register their generated images' schemes on import (importing ``mmgpt_eval.data`` registers the
    built-in ``easyvqa``, ``counting`` and ``blank``)."""
    _SCHEMES[scheme] = opener


def open_image_key(key: str) -> Image.Image | None:
    """Re-open an image from the key a sample record stores: a registered scheme's key, else a file path
    (``path:<p>`` or ``<p>``). ``None`` if it is gone or unreadable."""
    try:
        scheme, sep, _ = key.partition(":")
        opener = _SCHEMES.get(scheme) if sep else None
        if opener is not None:
            return opener(key)
        p = Path(key[len("path:") :] if key.startswith("path:") else key)
        if p.is_file():
            with Image.open(p) as im:
                return im.convert("RGB")
    except (OSError, ValueError, UserError):
        return None
    return None
