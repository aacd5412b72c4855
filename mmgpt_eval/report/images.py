"""Sample images as base64 PNG thumbnails (<= ``THUMB_PX``), cached by image key; a missing or broken
image becomes a placeholder, never an error."""

from __future__ import annotations

import base64
import io
from typing import Any

from .limits import THUMB_PX
from .text import clip, to_text


class Thumbs:
    """Thumbnails by image key; None when the image is gone."""

    def __init__(self) -> None:
        self.cache: dict[str, str | None] = {}

    def get(self, key: Any) -> str | None:
        k = str(key)
        if k not in self.cache:
            self.cache[k] = self._make(k)
        return self.cache[k]

    @staticmethod
    def _make(key: str) -> str | None:
        try:
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
