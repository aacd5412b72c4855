"""What a task hands the runner and gets back: samples with their images, generation requests, the
finished outputs, metric declarations and the aggregate. Plain dataclasses; no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from ..generation_settings import GenerationSettings
from ..templates import Template


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


@dataclass
class Request:
    """One generation to make. ``key`` names it within the sample ("main", "t0", "blank", ...)."""

    key: str
    prompt: str
    images: list[ImageRef]
    template: Template
    settings: GenerationSettings | None = None  # None: the run's settings

    @property
    def image_keys(self) -> list[str]:
        return [i.key for i in self.images]


@dataclass
class Output:
    """A finished request, as stored in the per-sample log."""

    prompt: str
    prompt_sha256: str
    raw: str
    prediction: str
    token_ids: list[int]
    stopped_on_eos: bool
    num_new_tokens: int
    max_new_tokens: int
    image_keys: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MetricInfo:
    kind: str  # "binary" | "continuous" | "corpus" (see mmgpt_eval.stats); "corpus-only": no per-sample values
    higher_is_better: bool = True
    scale: float = 1.0  # corpus value = scale * mean(per-sample values) for binary/continuous metrics
    unit: str = ""  # "%", "", "words" ...
    per_sample: str | None = None  # key in a sample record's "metrics"; None: corpus-only
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Aggregate:
    metrics: dict[str, float]
    breakdown: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # per-sample metric values only known once the whole set is scored (e.g. fixed-IDF CIDEr):
    # merged into the records' "metrics" and written back to the per-sample log
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)
