"""OpenFlamingo's evaluation protocol (``--protocol openflamingo``): the draws its ``evaluate.py`` makes,
reproduced for a single-process run, so that mmgpt-eval picks the same evaluation subset and the same
demos for every query whatever its own batch size and world size.

What OpenFlamingo 2.0.1 (``open_flamingo/eval/evaluate.py``, ``utils.py``) does for one trial with seed
``s``, and what :func:`draws` reproduces step by step:

1. ``np.random.seed(s)``; the evaluation subset is ``np.random.choice(len(test), num_samples,
   replace=False)`` (``num_samples`` = all when not given; a permutation then).
2. The loader visits that subset through a ``DistributedSampler`` (shuffle on, seed 0, epoch 0): with
   one process, in the order of ``torch.randperm(n, generator seeded 0)``.
3. Without RICES: the query set is ``np.random.choice(len(train), query_set_size, replace=False)``,
   drawn from the same NumPy stream right after step 1.
4. ``random.seed(s + rank)`` (rank 0); then for every evaluated item, in loader order, its demos are
   ``random.sample(query_set, k)`` with ``k`` = the shots, or 2 at 0-shot (text-only demos). The
   draws depend only on the position in that order, never on the batch size.
5. With RICES the demos are the ``k`` train items most similar to the query (over the whole train
   split), most similar last; see :class:`OpenFlamingoRICES`.

A multi-process OpenFlamingo run seeds step 4 with ``s + rank`` and splits the loader across ranks, so
its demos depend on the world size; mmgpt-eval reproduces the single-process run, for any world size.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .errors import UserError
from .taskapi import Sample

PROTOCOLS = ("mmgpt-eval", "openflamingo")
DEFAULT_QUERY_SET_SIZE = 2048  # evaluate.py --query_set_size
DEFAULT_TRIAL_SEEDS = (42,)  # evaluate.py --trial_seeds


@dataclass
class Draws:
    """One trial's draws. ``order``: indices into the test samples, in OpenFlamingo's loader order (the
    evaluated subset); ``demos``: for each of those test indices, indices into the train samples."""

    order: list[int]
    demos: dict[int, list[int]]
    query_set: list[int] | None


def eval_subset(n_test: int, num_samples: int | None, seed: int) -> tuple[list[int], Any]:
    """Steps 1-2: the evaluated test indices in loader order, and the NumPy stream (for step 3)."""
    import numpy as np
    import torch

    rs = np.random.RandomState(seed)  # what np.random.seed(seed) makes the global stream
    n = n_test if not num_samples or num_samples <= 0 else num_samples
    if n > n_test:
        raise UserError(f"--of-num-samples {n} is larger than the {n_test} test samples")
    chosen = rs.choice(n_test, n, replace=False).tolist()
    g = torch.Generator()
    g.manual_seed(0)  # DistributedSampler(seed=0), epoch 0
    perm = torch.randperm(len(chosen), generator=g).tolist()
    return [chosen[i] for i in perm], rs


def draws(n_test: int, n_train: int, k: int, seed: int, num_samples: int | None = None,
          query_set_size: int = DEFAULT_QUERY_SET_SIZE, rices: bool = False) -> Draws:
    """Steps 1-4 for one trial (``k``: demos per prompt, 2 at 0-shot)."""
    order, rs = eval_subset(n_test, num_samples, seed)
    if rices:
        return Draws(order=order, demos={}, query_set=None)
    if query_set_size > n_train:
        raise UserError(f"OpenFlamingo's query set is {query_set_size} train samples but the train split has "
                        f"{n_train} (set --of-query-set-size)")
    query = rs.choice(n_train, query_set_size, replace=False).tolist()
    py = random.Random(seed + 0)  # utils.random_seed(seed, rank=0)
    positions = list(range(len(query)))
    demos = {i: [query[j] for j in py.sample(positions, k)] for i in order}  # sample() picks by position
    return Draws(order=order, demos=demos, query_set=query)


class FixedDemos:
    """A demo selector that hands out precomputed demos (OpenFlamingo's draws) by sample id."""

    def __init__(self, by_id: dict[str, list[Sample]]):
        self.by_id = by_id

    def select(self, task: str, sample: Sample, pool: list[Sample], k: int) -> list[Sample]:
        demos = self.by_id[sample.id]
        if len(demos) != k:
            raise ValueError(f"{task} {sample.id}: {len(demos)} demos drawn, {k} needed")
        return demos


def fixed_demos(test: list[Sample], train: list[Sample], d: Draws) -> FixedDemos:
    return FixedDemos({test[i].id: [train[j] for j in d.demos[i]] for i in d.order})
