"""Opening images: a path, a PIL image or an ImageRef; re-opening the image a sample record names by
its key (reports, galleries), through the key schemes data modules register; and checking, before a
model loads, that every image file a run will read decodes. No torch.

Orientation: an image is read as its pixels are stored, EXIF orientation tags ignored, then converted
to RGB -- what OpenFlamingo's evaluation datasets do (``Image.open(path)`` + ``load()``, RGB conversion
in the image processor; no ``exif_transpose``), so scores compare with theirs."""

from __future__ import annotations

import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

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


# ------------------------------------------------------------------------------------ before the model
# verified (path, size, mtime) -> None; a later pass (another trial, another task) skips them
_VERIFIED: set[tuple[str, int, int]] = set()
# how many problems one error line lists before "and N more"
LISTED_PROBLEMS = 5


def image_problem(path: str | os.PathLike) -> str | None:
    """Why the image file ``path`` cannot be read as a run reads it, or None when it decodes.

    Two passes: ``verify()`` (structure and checksums: a PNG chunk with a bad CRC, a truncated
    chunk) and a real decode, which catches what ``verify()`` does not check (a JPEG cut short, a
    broken data stream). A JPEG decodes at 1/8 scale (``draft``): the decoder still reads every
    byte of the compressed data, at a fraction of the cost. Too many pixels (PIL's decompression-bomb
    limit) is a problem; a file that is not an image is one, and so is anything but a regular file (a
    FIFO would block the reader)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "not a regular file" if not os.path.isdir(path) else "image is a directory, expected an image file"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the loader reads those too
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    except FileNotFoundError:
        return "image not found"
    except IsADirectoryError:
        return "image is a directory, expected an image file"
    except Image.DecompressionBombError as e:
        return f"too many pixels ({e})"
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, ValueError...) for bad files
        return f"cannot read image ({type(e).__name__}: {' '.join(str(e).split())})"
    return None


def check_images(items: Sequence[tuple[str, str]], progress: bool = False, workers: int = 4) -> None:
    """Decode every image file of ``items`` (``(path, who reads it)``, e.g. ``"task vqav2, sample 42"``)
    once, in threads (PIL decodes outside the GIL), with a progress bar for large sets; every
    unreadable one is named in ONE :class:`~mmgpt_eval.errors.UserError` (the first in ``items`` order
    leads, with who reads it)."""
    todo: dict[str, str] = {}
    for path, who in items:
        todo.setdefault(str(path), who)
    keys: dict[str, tuple[str, int, int]] = {}
    for p in list(todo):
        try:
            st = os.stat(p)
        except OSError:
            continue  # image_problem names it
        keys[p] = (p, st.st_size, st.st_mtime_ns)
        if keys[p] in _VERIFIED:
            del todo[p]
    if not todo:
        return
    from .progress import progress_bars

    paths = list(todo)
    problems: dict[str, str] = {}
    with progress_bars(progress and len(paths) >= 200) as bars:
        bar = bars.add_task("checking images", total=len(paths), rate="")
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
            for p, problem in zip(paths, pool.map(image_problem, paths)):
                if problem is None:
                    if p in keys:
                        _VERIFIED.add(keys[p])
                else:
                    problems[p] = problem
                bars.update(bar, advance=1)
    if problems:
        bad = [p for p in paths if p in problems]
        first = bad[0]
        more = [f"{p} ({todo[p]}: {problems[p]})" for p in bad[1:LISTED_PROBLEMS]]
        rest = len(bad) - LISTED_PROBLEMS
        tail = f"; {len(bad) - 1} more unreadable image(s): {', '.join(more)}" if more else ""
        tail += f" and {rest} more" if rest > 0 else ""
        raise UserError(f"{problems[first]} ({todo[first]}; checked before loading the model){tail}", first)
