"""Sample images as base64 PNG thumbnails (<= ``THUMB_PX``), cached by image key; a missing, broken or
refused image becomes a placeholder, never an error.

Confinement: a samples log is input the report does not trust, so an image key never makes the report
read an arbitrary file. The rule, applied to each key before it is opened:

* A key that names something on disk -- ``path:<p>``, or any key that exists as a path (what
  :func:`mmgpt_eval.images.open_image_key` falls back to) -- is embedded only when it resolves (symlinks
  followed, ``..`` collapsed) inside an allowed root. Otherwise it is refused: placeholder, nothing read.
* Any other key is a generator key (``<generator>:<args>``, e.g. the synthetic shape, count and blank
  images): :func:`~mmgpt_eval.images.open_image_key` recreates it from its arguments without reading a
  user file; an unknown generator gives a placeholder.
* Allowed roots (:meth:`Thumbs.for_runs`): for every run of the report (baseline included) and every
  task it recorded, the task's declared data files (``DataFile`` options, read from
  ``TaskResult.options`` by the task's class): a folder option allows everything under it, a file
  option everything under the folder that contains it. Relative recorded paths resolve against the
  current directory. A task whose class is unknown allows nothing.
* ``Thumbs()`` without roots embeds generator keys only.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any, Iterable

from .limits import THUMB_PX
from .text import clip, to_text


def _resolve(p: Path) -> Path | None:
    try:
        return p.expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def data_roots(runs: Iterable[Any]) -> list[Path]:
    """The folders a report may read images from: see the module docstring."""
    from .hooks import task_classes

    roots: list[Path] = []
    classes = task_classes()
    for res in runs:
        if res is None:
            continue
        for name, tr in getattr(res, "tasks", {}).items():
            cls = classes.get(name)
            if cls is None or not isinstance(tr.options, dict):
                continue
            try:
                files = cls(dict(tr.options)).data_files()
            except Exception:  # noqa: BLE001 - odd recorded options: no roots from this task
                continue
            for p in files.values():
                if p is None:
                    continue
                r = _resolve(Path(p))
                if r is None:
                    continue
                root = r if r.is_dir() else r.parent
                if root != Path(root.anchor) and root not in roots:  # never the whole filesystem
                    roots.append(root)
    return roots


def confined_key(key: str, roots: Iterable[Path]) -> str | None:
    """The key to open (a file key as its resolved absolute path), or None when refused (see the module
    docstring)."""
    if "\x00" in key:
        return None
    fs = Path(key[len("path:") :] if key.startswith("path:") else key)
    try:
        on_disk = key.startswith("path:") or os.path.lexists(fs)
    except (OSError, ValueError):
        return None
    if not on_disk:
        return key  # a generator key: recreated from its arguments, no user file read
    r = _resolve(fs)
    if r is None or not any(r.is_relative_to(root) for root in roots):
        return None
    return str(r)


def allowed_key(key: str, roots: Iterable[Path]) -> bool:
    """May the report open this image key?"""
    return confined_key(key, roots) is not None


class Thumbs:
    """Thumbnails by image key; None when the image is gone or refused."""

    def __init__(self, roots: Iterable[Path] = ()) -> None:
        self.cache: dict[str, str | None] = {}
        self.roots = [Path(r) for r in roots]

    @classmethod
    def for_runs(cls, runs: Iterable[Any]) -> "Thumbs":
        """Thumbnails allowed to read under the runs' recorded data folders."""
        return cls(data_roots(runs))

    def get(self, key: Any) -> str | None:
        k = str(key)
        if k not in self.cache:
            target = confined_key(k, self.roots)
            self.cache[k] = self._make(target) if target is not None else None
        return self.cache[k]

    @staticmethod
    def _make(key: str) -> str | None:
        try:
            from .. import data  # noqa: F401 - registers the generated images' key schemes
            from ..images import open_image_key

            im = open_image_key(key)
            if im is None:
                return None
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
            return base64.b64encode(buf.getvalue()).decode("ascii")
        except Exception:  # noqa: BLE001 - a broken image must never break the report
            return None


def image_view(image_keys: Any, thumbs: Thumbs) -> dict[str, Any]:
    """The query image of a record (its last image key; few-shot demos come first) for the template."""
    keys = image_keys if isinstance(image_keys, list) else []
    if not keys:
        return {"has": False}
    key = keys[-1]
    return {"has": True, "b64": thumbs.get(key), "key": clip(to_text(key), 80), "more": len(keys) - 1}
