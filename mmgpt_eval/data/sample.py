"""What a reader produces: samples and their images. Plain dataclasses, no torch; the task API
(``mmgpt_eval.taskapi``) re-exports them for plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image


@dataclass
class ImageRef:
    """An image by path or by a loader (procedural data), with a stable key used for caching,
    deduplication (one feature computation per key) and prompt hashes."""

    key: str
    path: str | None = None
    loader: Callable[[], Image.Image] | None = field(default=None, repr=False, compare=False)

    def open(self) -> Image.Image:
        if self.loader is not None:
            return self.loader().convert("RGB")
        from ..images import open_image

        return open_image(self.path)

    @classmethod
    def from_path(cls, path: str | Path) -> "ImageRef":
        p = str(Path(path).resolve())
        return cls(key=p, path=p)


@dataclass
class Sample:
    """One evaluation item: its id (unique within the task), images, the fields its prompt is
    rendered from, the references it is scored against, and free-form metadata (breakdowns)."""

    id: str
    images: list[ImageRef]
    fields: dict[str, Any]
    references: Any
    meta: dict[str, Any] = field(default_factory=dict)
