"""The task plugin API.

A task is one Python module in ``tasks/`` (installed as ``mmgpt_eval_tasks``) -- or in a folder given
with ``--include-path``, or registered under the entry-point group ``mmgpt_eval.tasks`` -- that
defines a subclass of :class:`Task` (module attribute ``TASK``, or ``TASKS`` for several). A task:

1. declares its options (data paths...) with :meth:`Task.add_arguments` (CLI flags ``--<task>-<name>``,
   also settable from a TOML task config);
2. loads its samples (:meth:`Task.load`) in a stable order; ``--limit N`` takes a fixed subset
   (:func:`fixed_subset`: the N samples with the smallest ``sha256("<task>:<id>")``, independent of file
   order and of N's other samples, so a larger N contains every smaller one);
3. turns each sample into generation requests with a named template (:meth:`Task.requests`; one
   round for single-turn tasks, several for dialogues, where later rounds see earlier outputs);
4. post-processes each generation (default: the template's answer-extraction rule);
5. scores each sample (:meth:`Task.score_sample`, per-sample metric values, kept for paired statistics);
6. aggregates (:meth:`Task.aggregate`, corpus-level metrics and breakdowns).
"""

from __future__ import annotations

import argparse
import hashlib
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from PIL import Image

from .errors import UserError
from .model.generate import Generation, GenerationSettings
from .templates import Template, get_template, render_fewshot


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
        from .model.generate import open_image

        return open_image(self.path)

    @classmethod
    def from_path(cls, path: str | Path) -> "ImageRef":
        p = str(Path(path).resolve())
        return cls(key=p, path=p)


def open_image_key(key: str) -> Image.Image | None:
    """Re-open an image from the key a sample record stores (reports, galleries): a file path, or
    ``easyvqa:<split>:<id>``, ``counting:<seed>:<index>``, ``blank:<size>:white``. ``None`` if gone."""
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


@dataclass
class Sample:
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


@dataclass
class RunContext:
    """What a task may use while building requests."""

    seed: int = 0
    num_fewshot: int = 0
    fewshot_zero_mode: str = "text-demos"  # OpenFlamingo 0-shot: 2 text-only demos; or "none"
    template: Template | None = None
    history_mode: str = "self"
    fewshot_selection: str = "random"  # or "rices" (image similarity, most similar last)
    model: Any = None  # the LoadedModel (e.g. for image-similarity demo selection)
    cache_dir: Any = None  # where tasks may cache derived data (RICES features)
    _rices: dict = field(default_factory=dict, repr=False)


def fixed_subset(task_name: str, samples: list[Sample], limit: int | None) -> list[Sample]:
    """The documented ``--limit`` subset: samples ordered by ``sha256("<task>:<id>")``, first N,
    returned in their original order."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 1:
        raise UserError("--limit must be at least 1")
    ranked = sorted(samples, key=lambda s: hashlib.sha256(f"{task_name}:{s.id}".encode()).hexdigest())
    keep = {s.id for s in ranked[:limit]}
    return [s for s in samples if s.id in keep]


def item_rng(seed: int, task: str, sample_id: str) -> random.Random:
    """Per-item RNG for few-shot demos: a function of the seed and the item id only -- never of the
    process rank or the batch (OpenFlamingo's eval seeds with seed + rank)."""
    h = hashlib.sha256(f"{seed}:{task}:{sample_id}".encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


class Task:
    """Base class. Subclasses set the class attributes and implement ``load`` and scoring."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    default_template: ClassVar[str] = "mmgpt"
    templates: ClassVar[tuple[str, ...]] = ("mmgpt",)
    primary_metric: ClassVar[str] = ""
    multi_round: ClassVar[bool] = False
    shared_options: ClassVar[tuple[str, ...]] = ()  # options defined by another task's flags

    def __init__(self, options: dict[str, Any] | None = None):
        self.options: dict[str, Any] = dict(options or {})

    # ----------------------------------------------------------------- options
    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """Add ``--<name>-<option>`` flags. Defaults must be None (so configs can fill them)."""

    @classmethod
    def option_names(cls) -> list[str]:
        p = argparse.ArgumentParser(add_help=False)
        cls.add_arguments(p.add_argument_group())
        return [a.dest for a in p._actions if a.dest != "help"]

    def option(self, key: str, default: Any = None) -> Any:
        v = self.options.get(key)
        return default if v is None else v

    def data_files(self) -> dict[str, Path | None]:
        """Files/folders this task reads with the current options (for ``data check``)."""
        return {}

    def data_layout(self, root: Path) -> dict[str, Path]:
        """Default option values under a data root (``--data-root``): option name -> path. Options
        the user set are never overridden. Empty for tasks whose data ships with the package."""
        return {}

    def data_sources(self) -> dict[str, str]:
        """Option name -> where that file comes from (official URLs; mmgpt-eval never downloads)."""
        return {}

    def optional_data(self) -> set[str]:
        """Layout options that are only needed for some settings (e.g. few-shot train files)."""
        return set()

    def public_options(self) -> dict[str, Any]:
        """This task's own options that are set (recorded in results and in the fingerprint)."""
        own = set(self.option_names()) | set(self.shared_options)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(self.options.items())
                if v is not None and k in own}

    # ------------------------------------------------------------------- data
    def load(self) -> list[Sample]:
        raise NotImplementedError

    def fewshot_pool(self) -> list[Sample]:
        """Samples demos are drawn from (a train split). Default: none (few-shot unsupported)."""
        return []

    # --------------------------------------------------------------- prompting
    def check_template(self, template: Template) -> None:
        if template.name not in self.templates:
            raise UserError(f"task {self.name} does not support template {template.name!r}; "
                            f"supported: {', '.join(self.templates)}")

    def generation_settings(self, template: Template) -> GenerationSettings:
        return GenerationSettings()

    def query_fields(self, sample: Sample) -> dict[str, str]:
        return dict(sample.fields)

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        raise UserError(f"task {self.name} does not support few-shot demos")

    def rounds(self, sample: Sample) -> int:
        return 1

    def requests(self, sample: Sample, round_index: int, history: dict[str, Output],
                 ctx: RunContext) -> list[Request]:
        """Default: one request, the sample rendered through the run's template, with few-shot demos
        for templates that have a demo format."""
        template = ctx.template or get_template(self.default_template)
        images = list(sample.images)
        if template.demo is not None and (ctx.num_fewshot > 0 or ctx.fewshot_zero_mode == "text-demos"):
            demos = self.select_demos(sample, ctx)
            zero = ctx.num_fewshot == 0
            prompt, n_demo_img = render_fewshot(template, self.query_fields(sample),
                                                [self.demo_fields(d) for d in demos], zero_shot_text_demos=zero)
            demo_images = [] if zero else [img for d in demos for img in d.images[:1]]
            images = demo_images + images
        else:
            prompt = template.render(**self.query_fields(sample))
        return [Request("main", prompt, images, template)]

    def select_demos(self, sample: Sample, ctx: RunContext) -> list[Sample]:
        """Random demos: ``num_fewshot`` items (2 text-only for 0-shot) from the pool, drawn with an
        RNG seeded by the seed and the item id."""
        k = ctx.num_fewshot if ctx.num_fewshot > 0 else 2
        pool = self.fewshot_pool()
        if len(pool) < k:
            raise UserError(f"task {self.name}: few-shot needs at least {k} demo samples, the pool has {len(pool)}")
        if ctx.fewshot_selection == "rices" and ctx.num_fewshot > 0:
            if ctx.model is None:
                raise UserError("RICES demo selection needs the model's vision encoder")
            if self.name not in ctx._rices:
                from .rices import RICES

                ctx._rices[self.name] = RICES(ctx.model, pool, ctx.cache_dir)
            return ctx._rices[self.name].find(sample, k)
        rng = item_rng(ctx.seed, self.name, sample.id)
        return rng.sample(pool, k)

    def postprocess(self, request: Request, generation: Generation) -> str:
        return request.template.extract(generation.full_text, generation.text)

    # ----------------------------------------------------------------- scoring
    def metric_info(self) -> dict[str, MetricInfo]:
        raise NotImplementedError

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        raise NotImplementedError

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        """Default: per-sample means scaled by each metric's scale."""
        metrics = {}
        for name, info in self.metric_info().items():
            key = info.per_sample or name
            vals = [r["metrics"][key] for r in records if r["metrics"].get(key) is not None]
            metrics[name] = round(info.scale * sum(vals) / len(vals), 4) if vals else float("nan")
        return Aggregate(metrics)

    def references_for_log(self, sample: Sample) -> Any:
        return sample.references
