"""mmgpt-eval's own protocol (the default): each task's default template (or ``--template``), the
documented ``--limit`` subset (samples ordered by ``sha256("<task>:<id>")``, first N), demos from the
first 2,048 train samples, drawn at random per item (seeded by the seed and the item id) or by RICES."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..taskapi import RandomDemos, Sample, Task, demos_needed, fixed_subset
from ..templates import Template, get_template
from .base import EvalConfig, PreparedTask, Protocol

if TYPE_CHECKING:
    from ..model.build import LoadedModel
    from ..taskapi.demos import DemoSelector


class Native(Protocol):
    name = "mmgpt-eval"

    def template(self, task: Task, cfg: EvalConfig) -> Template:
        return get_template(cfg.template or task.default_template)

    def subset(self, task: Task, samples: list[Sample], cfg: EvalConfig) -> list[Sample]:
        return fixed_subset(task.name, samples, cfg.limit)

    def subset_description(self, pt: PreparedTask, cfg: EvalConfig) -> str:
        if cfg.limit is None or cfg.limit >= pt.n_available:
            return "all samples"
        return f"first {cfg.limit} of {pt.n_available} samples ordered by sha256('{pt.task.name}:<id>')"

    def demo_selector(self, pt: PreparedTask, cfg: EvalConfig, loaded: LoadedModel) -> DemoSelector | None:
        """Random demos (seeded per item), or RICES over the task's pool with the chosen image encoder."""
        if not demos_needed(pt.template, cfg.num_fewshot, cfg.fewshot_zero_mode):
            return None
        if cfg.fewshot_selection == "rices" and cfg.num_fewshot > 0:
            from ..rices import RICES

            return RICES(loaded, pt.task.demo_pool(self.pool_limit), cfg.out_dir / "cache", encoder=cfg.rices_encoder)
        return RandomDemos(cfg.seed)
