"""Choosing few-shot demonstrations. The runner builds a selector and hands it to the task in its
:class:`~mmgpt_eval.taskapi.RunContext`; a task never touches the model.

:class:`RandomDemos` draws ``k`` demos per item with an RNG seeded by the seed and the item id only
-- never the process rank or the batch -- so any world size and batch size give the same prompts.
Image-similarity selection (RICES) lives in ``mmgpt_eval.rices`` and needs the model.
"""

from __future__ import annotations

import hashlib
import random
from typing import Protocol

from .types import Sample


class DemoSelector(Protocol):
    def select(self, task: str, sample: Sample, pool: list[Sample], k: int) -> list[Sample]:
        """``k`` demos for ``sample`` from ``pool``, in prompt order."""


def item_rng(seed: int, task: str, sample_id: str) -> random.Random:
    """Per-item RNG: a function of the seed, the task and the item id only."""
    h = hashlib.sha256(f"{seed}:{task}:{sample_id}".encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


class RandomDemos:
    def __init__(self, seed: int = 0):
        self.seed = seed

    def select(self, task: str, sample: Sample, pool: list[Sample], k: int) -> list[Sample]:
        return item_rng(self.seed, task, sample.id).sample(pool, k)
