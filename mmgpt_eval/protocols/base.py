"""The protocol interface: what a run's protocol decides (see :mod:`mmgpt_eval.protocols`).

The runner and the API call these hooks and never ask which protocol runs; tasks only declare data a
protocol may act on (``openflamingo_template``, ``openflamingo_options``, ``openflamingo_postprocess``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar
from typing import Protocol as Structural

from ..errors import UserError
from ..taskapi import Sample, Task
from ..taskapi.task import DEFAULT_POOL_LIMIT
from ..templates import Template

if TYPE_CHECKING:
    from ..model.build import LoadedModel
    from ..taskapi.demos import DemoSelector

# an mmgpt_eval.config.EvalConfig; not imported here: config lists the protocols (--protocol's choices)
# and the runner calls them, so the protocols depend on neither
EvalConfig = Any


class PreparedTask(Structural):
    """What a protocol reads of the runner's prepared task."""

    task: Task
    samples: list[Sample]  # the evaluated ones
    n_available: int
    template: Template
    population: list[Sample]  # every sample of the task


def _settings(cfg: EvalConfig) -> list[tuple[str, Any]]:
    """(field name, Setting metadata) of an EvalConfig."""
    return [(f.name, f.metadata["setting"]) for f in dataclasses.fields(cfg)]


class Protocol:
    """Base class. ``name`` is the ``--protocol`` value; the class attributes are the protocol's fixed
    choices, the methods its decisions."""

    name: ClassVar[str] = ""
    default_seed: ClassVar[int] = 0
    # demos come from the first pool_limit train samples in file order (None: the whole split)
    pool_limit: ClassVar[int | None] = DEFAULT_POOL_LIMIT
    # 0-shot prompts of few-shot templates pick their text-only demos with --fewshot-selection too
    selects_zero_shot_demos: ClassVar[bool] = False
    # 0-shot ranking prompts pass their text-only demos' images (OpenFlamingo's classification quirk)
    zero_shot_ranking_demo_images: ClassVar[bool] = False

    # ------------------------------------------------------------------ settings
    def owned_settings(self, cfg: EvalConfig) -> dict[str, Any]:
        """This protocol's own settings (EvalConfig fields whose ``owner`` is this protocol)."""
        return {name: getattr(cfg, name) for name, s in _settings(cfg) if s.owner == self.name}

    def check(self, cfg: EvalConfig) -> None:
        """Refuse combinations of settings this protocol cannot honour (before any data or model)."""
        foreign: dict[str, list[tuple[str, Any]]] = {}
        for name, s in _settings(cfg):
            if s.owner and s.owner != self.name and s.flag is not None:
                foreign.setdefault(s.owner, []).append((name, s))
        for owner, fields in foreign.items():
            if any(getattr(cfg, name) is not None for name, _ in fields):
                raise UserError(f"{' / '.join(s.flag.name for _, s in fields)} need --protocol {owner}")

    def resolve(self, cfg: EvalConfig) -> EvalConfig:
        """``cfg`` with this protocol's defaults filled in (the seed; ``limit="all"``: no limit)."""
        if cfg.seed is None:
            cfg = dataclasses.replace(cfg, seed=self.default_seed)
        if cfg.limit == "all":
            cfg = dataclasses.replace(cfg, limit=None)
        return cfg

    # ------------------------------------------------------------------ tasks
    def make_task(self, cls: type[Task], options: dict[str, Any]) -> Task:
        """The task object this protocol evaluates, from the run's task options."""
        return cls(options)

    def template(self, task: Task, cfg: EvalConfig) -> Template:
        raise NotImplementedError

    def subset(self, task: Task, samples: list[Sample], cfg: EvalConfig) -> list[Sample]:
        """The evaluated samples, in task order."""
        raise NotImplementedError

    def subset_description(self, pt: PreparedTask, cfg: EvalConfig) -> str:
        raise NotImplementedError

    def demo_selector(self, pt: PreparedTask, cfg: EvalConfig, loaded: LoadedModel) -> DemoSelector | None:
        raise NotImplementedError

    # ------------------------------------------------------------------ provenance
    def notes(self, pt: PreparedTask, cfg: EvalConfig) -> list[str]:
        """What results say about this protocol for one task."""
        return []

    def fingerprint_extras(self, cfg: EvalConfig) -> dict[str, Any]:
        """What the per-sample log's fingerprint holds beyond the settings (``{}``: nothing)."""
        return {}

    def run_info(self, cfg: EvalConfig) -> dict[str, Any]:
        """Results' ``run`` info about the protocol: its name and its own settings."""
        return {"protocol": self.name, **self.owned_settings(cfg)}
