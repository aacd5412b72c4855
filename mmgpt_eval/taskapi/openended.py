"""The shared part of open-ended tasks whose quality a judge model grades (``llava-bench``,
``mmvet``): a generation budget option, and the task's own metrics, which describe the answers only
(their length in words and the share of empty ones); the quality numbers come from judging
(:mod:`mmgpt_eval.taskapi.judging`, ``mmgpt-eval judge``). A subclass declares its data, loads its
samples, declares ``JUDGING`` and names the groups its breakdown counts samples by."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Iterable

from ..generation_settings import GenerationSettings
from ..templates import Template
from .options import Option
from .task import Task
from .types import Aggregate, MetricInfo, Output, Sample


def max_new_tokens_option(default: int) -> Option:
    """The ``max_new_tokens`` option of an open-ended task (its flag: ``--<task>-max-new-tokens``)."""
    return Option("max_new_tokens", f"generation budget per answer (default {default})", type=int, default=default)


class OpenEndedTask(Task):
    """An open-ended task judged by a model: see the module docstring."""

    templates = ("mmgpt",)
    default_template = "mmgpt"
    primary_metric = "answer_words"
    #: the breakdown key counting samples per group, e.g. ``"n_by_category"``
    GROUP_COUNT_KEY: ClassVar[str] = "n_by_group"

    def sample_groups(self, sample: Sample) -> Iterable[str]:
        """The groups a sample counts toward in the breakdown (none by default)."""
        return ()

    def generation_settings(self, template: Template) -> GenerationSettings:
        base = self.GENERATION.get(template.name, template.settings)
        return replace(base, max_new_tokens=self.option("max_new_tokens"))

    def metric_info(self) -> dict[str, MetricInfo]:
        return {
            "answer_words": MetricInfo(
                "continuous", True, 1.0, " words", "words", "mean answer length in words (quality: `mmgpt-eval judge`)"
            ),
            "empty_rate": MetricInfo("binary", False, 100.0, "%", "empty", "share of empty answers"),
        }

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        words = len(outputs["main"].prediction.split())
        return {"words": float(words), "empty": float(words == 0)}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        agg = super().aggregate(samples, records)
        counts: dict[str, int] = {}
        for s in samples:
            for g in self.sample_groups(s):
                counts[g] = counts.get(g, 0) + 1
        if counts:
            agg.breakdown[self.GROUP_COUNT_KEY] = dict(sorted(counts.items()))
        return agg
