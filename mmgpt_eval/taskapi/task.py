"""The :class:`Task` base class: what a task plugin declares and the hooks the runner calls.

One sample's path through a task: :meth:`Task.load` -> (``--limit``: :func:`fixed_subset`) ->
:meth:`Task.requests` (one round, or several for dialogues where later rounds see earlier outputs)
-> generation (the runner) -> :meth:`Task.postprocess` -> :meth:`Task.score_sample` ->
:meth:`Task.aggregate`. A ranking task (classification, multiple choice) returns
:meth:`Task.candidates` for a sample; its request is then a :class:`RankRequest` and its output a
:class:`Ranking` (no post-processing: the prediction is the best candidate). The report shows the
task's :attr:`Task.view` (``mmgpt_eval.taskapi.reporting``) for task-specific views of the results.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence, overload

from ..errors import UserError
from ..generation_settings import GenerationSettings
from ..templates import Template, get_template, render_fewshot
from .demos import DemoSelector, RandomDemos
from .judging import Judging
from .options import DataFile, Option
from .reporting import ReportHooks
from .types import Aggregate, MetricInfo, Output, RankRequest, Request, Sample


# mmgpt-eval's own few-shot pool: the first 2,048 train samples in file order
DEFAULT_POOL_LIMIT = 2048


@dataclass
class RunContext:
    """What a task may use while building requests."""

    seed: int = 0
    num_fewshot: int = 0
    fewshot_zero_mode: str = "text-demos"  # OpenFlamingo 0-shot: 2 text-only demos; or "none"
    template: Template | None = None
    history_mode: str = "self"
    demos: DemoSelector | None = None  # None: random demos seeded by ``seed``
    # the run's protocol (mmgpt_eval.protocols) decides these two:
    pool_limit: int | None = DEFAULT_POOL_LIMIT  # demos from the first pool_limit train samples (None: all)
    zero_shot_ranking_demo_images: bool = False  # 0-shot ranking prompts keep their text demos' images


def fixed_subset(task_name: str, samples: list[Sample], limit: int | None) -> list[Sample]:
    """The documented ``--limit`` subset: samples ordered by ``sha256("<task>:<id>")``, first N,
    returned in their original order (a larger N contains every smaller one)."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 1:
        raise UserError("--limit must be at least 1")
    ranked = sorted(samples, key=lambda s: hashlib.sha256(f"{task_name}:{s.id}".encode()).hexdigest())
    keep = {s.id for s in ranked[:limit]}
    return [s for s in samples if s.id in keep]


def demos_needed(template: Template, num_fewshot: int, zero_mode: str) -> int:
    """How many demos a prompt takes: ``num_fewshot``, or OpenFlamingo's 2 text-only ones at 0-shot."""
    if template.demo is None or (num_fewshot == 0 and zero_mode != "text-demos"):
        return 0
    return num_fewshot if num_fewshot > 0 else 2


class Task:
    """Base class. Subclasses set the class attributes and implement ``load``, ``metric_info`` and
    ``score_sample`` (and ``aggregate`` when the corpus metric is not a mean of per-sample values)."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    default_template: ClassVar[str] = "mmgpt"
    templates: ClassVar[tuple[str, ...]] = ("mmgpt",)
    primary_metric: ClassVar[str] = ""
    multi_round: ClassVar[bool] = False
    OPTIONS: ClassVar[tuple[Option, ...]] = ()  # options and data files (see taskapi.options)
    # decoding per template name, overriding the template's own defaults
    GENERATION: ClassVar[dict[str, GenerationSettings]] = {}
    # old metric name -> new name, so runs written before a rename are read under the new names
    RENAMED_METRICS: ClassVar[dict[str, str]] = {}
    # the template and task options of OpenFlamingo's protocol for this task (--protocol openflamingo);
    # None: the task is not part of OpenFlamingo's evaluation
    openflamingo_template: ClassVar[str | None] = None
    openflamingo_options: ClassVar[dict[str, Any]] = {}
    # the answer post-processing OpenFlamingo's protocol applies to this task's generations, by name
    # (mmgpt_eval.protocols.openflamingo.POSTPROCESS); None: the task's own postprocess
    openflamingo_postprocess: ClassVar[str | None] = None
    # ranking tasks (see candidates()): rank by mean log-probability per candidate token (OpenFlamingo)
    # or by the sum; how many of the best candidates the per-sample log keeps
    normalize_length: ClassVar[bool] = True
    rank_top_k: ClassVar[int] = 5
    # what the HTML report shows of this task beyond the generic views (taskapi.reporting)
    view: ClassVar[ReportHooks] = ReportHooks()
    # open-ended quality judged by a model (taskapi.judging); None: this task is not judged
    JUDGING: ClassVar[Judging | None] = None

    def __init__(self, options: dict[str, Any] | None = None, answer_postprocess: Callable[[str], str] | None = None):
        """``answer_postprocess``: the prediction from a generation's text, replacing :meth:`postprocess`
        (a protocol's post-processing for this task, e.g. OpenFlamingo's OK-VQA stemming)."""
        self.options: dict[str, Any] = dict(options or {})
        if answer_postprocess is not None:
            self.postprocess = lambda request, generation: answer_postprocess(generation.text)  # type: ignore

    # ----------------------------------------------------------------- options
    @classmethod
    def option_keys(cls) -> list[str]:
        """The keys of this task's options (``<task>_<name>``) as results and run configs name them."""
        return [o.key(cls.name) for o in cls.OPTIONS]

    @classmethod
    def add_arguments(cls, group: Any) -> None:
        for o in cls.OPTIONS:
            o.add_to(group, cls.name)

    @classmethod
    def declared(cls, name: str) -> Option:
        for o in cls.OPTIONS:
            if o.name == name:
                return o
        raise KeyError(f"task {cls.name} declares no option {name!r}")

    def option(self, name: str, default: Any = None) -> Any:
        """The value of option ``name`` (short name), else ``default``, else the declared default."""
        o = self.declared(name)
        v = self.options.get(o.key(self.name))
        if v is not None:
            return v
        return default if default is not None else o.default

    @overload
    def path(self, name: str, required: Literal[True] = ...) -> Path: ...

    @overload
    def path(self, name: str, required: bool) -> Path | None: ...

    def path(self, name: str, required: bool = True) -> Path | None:
        """A data file option as a Path that exists; a clear error when it is required and unset or
        missing."""
        o = self.declared(name)
        v = self.options.get(o.key(self.name))
        hint = f"`mmgpt-eval data check --tasks {self.name}` lists what is missing and where to get it"
        if v is None:
            if required:
                raise UserError(f"task {self.name} needs {o.flag(self.name)} (or a data root; {hint})")
            return None
        p = Path(v)
        if not p.exists():
            raise UserError(f"{self.name} {name.replace('_', ' ')} not found ({hint})", p)
        return p

    def data_files(self) -> dict[str, Path | None]:
        """Every declared data file with its current value (None when unset)."""
        return {
            o.name: (Path(self.options[o.key(self.name)]) if self.options.get(o.key(self.name)) else None)
            for o in self.OPTIONS
            if isinstance(o, DataFile)
        }

    def public_options(self) -> dict[str, Any]:
        """This task's options that are set (recorded in results and in the fingerprint)."""
        own = set(self.option_keys())
        return {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in sorted(self.options.items())
            if v is not None and k in own
        }

    # ------------------------------------------------------------------- data
    def load(self) -> list[Sample]:
        raise NotImplementedError

    def fewshot_pool(self) -> list[Sample]:
        """The whole train split demos are drawn from, in file order (OpenFlamingo's dataset order).
        Default: none (few-shot unsupported)."""
        return []

    def train_samples(self) -> list[Sample]:
        """:meth:`fewshot_pool`, loaded once."""
        if not hasattr(self, "_train_samples"):
            self._train_samples = self.fewshot_pool()
        return self._train_samples

    def demo_pool(self, limit: int | None = DEFAULT_POOL_LIMIT) -> list[Sample]:
        """The samples demos are chosen from: the first ``limit`` train samples in file order (all when
        None; the run's protocol decides)."""
        train = self.train_samples()
        return train if limit is None else train[:limit]

    def check_fewshot(
        self, template: Template, num_fewshot: int, zero_mode: str, pool_limit: int | None = DEFAULT_POOL_LIMIT
    ) -> None:
        """Fail before any model is loaded when the prompts need more demos than the pool has."""
        k = demos_needed(template, num_fewshot, zero_mode)
        if k:
            n = len(self.demo_pool(pool_limit))
            if n < k:
                raise UserError(f"task {self.name}: few-shot needs at least {k} demo samples, the pool has {n}")

    # --------------------------------------------------------------- prompting
    def check_template(self, template: Template) -> None:
        if template.name not in self.templates:
            raise UserError(
                f"task {self.name} does not support template {template.name!r}; supported: {', '.join(self.templates)}"
            )

    def generation_settings(self, template: Template) -> GenerationSettings:
        return self.GENERATION.get(template.name, template.settings)

    def query_fields(self, sample: Sample) -> dict[str, str]:
        return dict(sample.fields)

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        raise UserError(f"task {self.name} does not support few-shot demos")

    def rounds(self, sample: Sample) -> int:
        return 1

    def candidates(self, sample: Sample) -> list[str] | None:
        """A ranking task's candidate continuations for ``sample`` (class names, choices); None (the
        default): a generation task."""
        return None

    def requests(
        self, sample: Sample, round_index: int, history: dict[str, Output], ctx: RunContext
    ) -> Sequence[Request | RankRequest]:
        """Default: one request, the sample rendered through the run's template, with few-shot demos
        for templates that have a demo format; a ranking request when the task has candidates."""
        template = ctx.template or get_template(self.default_template)
        images = list(sample.images)
        cands = self.candidates(sample)
        k = demos_needed(template, ctx.num_fewshot, ctx.fewshot_zero_mode)
        if k:
            demos = (ctx.demos or RandomDemos(ctx.seed)).select(self.name, sample, self.demo_pool(ctx.pool_limit), k)
            zero = ctx.num_fewshot == 0
            prompt, _ = render_fewshot(
                template, self.query_fields(sample), [self.demo_fields(d) for d in demos], zero_shot_text_demos=zero
            )
            # 0-shot text-only demos pass no images, except where the protocol keeps them for ranking
            keep = not zero or (cands is not None and ctx.zero_shot_ranking_demo_images)
            demo_images = [img for d in demos for img in d.images[:1]] if keep else []
            images = demo_images + images
        else:
            prompt = template.render(**self.query_fields(sample))
        if cands is not None:
            return [RankRequest("main", prompt, images, template, list(cands), self.normalize_length, self.rank_top_k)]
        return [Request("main", prompt, images, template)]

    def postprocess(self, request: Request, generation: Any) -> str:
        """The prediction from a generation (default: the template's answer-extraction rule)."""
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
