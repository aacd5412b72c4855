"""The protocol interface: what a run's protocol decides (see :mod:`mmgpt_eval.protocols`).

The runner and the API call these hooks and never ask which protocol runs; tasks only declare data a
protocol may act on (``openflamingo_template``, ``openflamingo_options``, ``openflamingo_postprocess``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UserError
from ..taskapi import Sample, Task
from ..taskapi.task import DEFAULT_POOL_LIMIT

if TYPE_CHECKING:
    from ..config import EvalConfig
    from ..model.build import LoadedModel
    from ..runner import PreparedTask
    from ..taskapi.demos import DemoSelector
    from ..templates import Template


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
        from ..config import settings

        return {f.name: getattr(cfg, f.name) for f in settings() if f.metadata["setting"].owner == self.name}

    def check(self, cfg: EvalConfig) -> None:
        """Refuse combinations of settings this protocol cannot honour (before any data or model)."""
        from ..config import settings

        foreign: dict[str, list[str]] = {}
        for f in settings():
            s = f.metadata["setting"]
            if s.owner and s.owner != self.name and s.flag is not None:
                foreign.setdefault(s.owner, []).append(f.name)
        for owner, fields in foreign.items():
            if any(getattr(cfg, n) is not None for n in fields):
                from ..config import meta

                raise UserError(f"{' / '.join(meta(n).flag.name for n in fields)} need --protocol {owner}")

    def resolve(self, cfg: EvalConfig) -> EvalConfig:
        """``cfg`` with this protocol's defaults filled in (the seed)."""
        return cfg if cfg.seed is not None else dataclasses.replace(cfg, seed=self.default_seed)

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
