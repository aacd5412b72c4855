"""OpenFlamingo's evaluation protocol (``--protocol openflamingo``): ``open_flamingo/eval/evaluate.py``
exactly -- each task's OpenFlamingo template and task options (``openflamingo_template``,
``openflamingo_options``), the answer post-processing a task names for it (``openflamingo_postprocess``:
OK-VQA's stemming), 2 text-only demos at 0-shot, and the draws its ``evaluate.py`` makes, reproduced for
a single-process run, so that mmgpt-eval picks the same evaluation subset and the same demos for every
query whatever its own batch size and world size.

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

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import UserError
from ..rices import RICES
from ..taskapi import Sample, Task, demos_needed
from ..templates import Template, get_template
from .base import EvalConfig, PreparedTask, Protocol

if TYPE_CHECKING:
    from ..model.build import LoadedModel
    from ..taskapi.demos import DemoSelector

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


def draws(
    n_test: int,
    n_train: int,
    k: int,
    seed: int,
    num_samples: int | None = None,
    query_set_size: int = DEFAULT_QUERY_SET_SIZE,
    rices: bool = False,
) -> Draws:
    """Steps 1-4 for one trial (``k``: demos per prompt, 2 at 0-shot)."""
    order, rs = eval_subset(n_test, num_samples, seed)
    if rices:
        return Draws(order=order, demos={}, query_set=None)
    if query_set_size > n_train:
        raise UserError(
            f"OpenFlamingo's query set is {query_set_size} train samples but the train split has "
            f"{n_train} (set --of-query-set-size)"
        )
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


class OpenFlamingoRICES(RICES):
    """RICES as OpenFlamingo's ``rices.py`` ranks: over the whole train split, similarities sorted with
    ``argsort(descending=True)``, the first k, most similar last. The features come from the model's own
    vision encoder (OpenFlamingo uses a separate open_clip ViT-L-14 ``openai``, which this offline
    harness cannot download; the tests give OpenFlamingo's code the same encoder)."""

    def find(self, sample: Sample, k: int) -> list[Sample]:
        q = self.embed([sample])
        sims = (q @ self.features.T).squeeze()
        if sims.ndim == 0:
            sims = sims.unsqueeze(0)
        idx = sims.argsort(dim=-1, descending=True)[:k].tolist()
        return [self.pool[i] for i in reversed(idx)]


def _okvqa_stemming(text: str) -> str:
    from ..metrics.vqa import openflamingo_okvqa_postprocess

    return openflamingo_okvqa_postprocess(text)


# the answer post-processing a task may name in ``openflamingo_postprocess``: what OpenFlamingo's
# evaluate.py applies to that task's generations (each checked once before any model loads)
POSTPROCESS: dict[str, Callable[[str], str]] = {
    "okvqa-stemming": _okvqa_stemming,  # ok_vqa_utils.postprocess_ok_vqa_generation
}


class OpenFlamingo(Protocol):
    name = "openflamingo"
    default_seed = DEFAULT_TRIAL_SEEDS[0]
    pool_limit = None  # OpenFlamingo draws from the whole train split
    selects_zero_shot_demos = True  # also at 0-shot: OpenFlamingo picks the 2 text demos by RICES
    # OpenFlamingo's evaluate_classification passes the 0-shot demos' images although their <image>
    # tokens are gone, so the query's <image> sees the first demo's image (v2)
    zero_shot_ranking_demo_images = True

    def resolve(self, cfg: EvalConfig) -> EvalConfig:
        cfg = super().resolve(cfg)
        if cfg.of_query_set_size is None:
            cfg = dataclasses.replace(cfg, of_query_set_size=DEFAULT_QUERY_SET_SIZE)
        return cfg

    def make_task(self, cls: type[Task], options: dict[str, Any]) -> Task:
        """The task with OpenFlamingo's options for it (a conflicting value is refused) and its
        post-processing."""
        if cls.openflamingo_template is None:
            raise UserError(f"task {cls.name} is not part of OpenFlamingo's evaluation (--protocol openflamingo)")
        options = dict(options)
        for name, value in cls.openflamingo_options.items():
            key = cls.declared(name).key(cls.name)
            if options.get(key) not in (None, value):
                raise UserError(f"--protocol openflamingo sets {cls.name}'s {name} to {value}, not {options[key]}")
            options[key] = value
        post = None
        if cls.openflamingo_postprocess is not None:
            post = POSTPROCESS[cls.openflamingo_postprocess]
            post("checking")  # missing resources (NLTK data) fail before the model loads
        return cls(options, answer_postprocess=post)

    def template(self, task: Task, cfg: EvalConfig) -> Template:
        if task.openflamingo_template is None:
            raise UserError(f"task {task.name} is not part of OpenFlamingo's evaluation (--protocol openflamingo)")
        if cfg.template and cfg.template != task.openflamingo_template:
            raise UserError(
                f"--protocol openflamingo evaluates {task.name} with template "
                f"{task.openflamingo_template}, not {cfg.template}"
            )
        if cfg.limit is not None:
            raise UserError(
                "--limit takes mmgpt-eval's fixed subset; with --protocol openflamingo use "
                "--of-num-samples (OpenFlamingo's seeded subset)"
            )
        if cfg.fewshot_zero_mode != "text-demos":
            raise UserError(
                "--protocol openflamingo evaluates 0-shot with 2 text-only demos (--fewshot-zero-mode text-demos)"
            )
        return get_template(task.openflamingo_template)

    def subset(self, task: Task, samples: list[Sample], cfg: EvalConfig) -> list[Sample]:
        chosen = set(eval_subset(len(samples), cfg.of_num_samples, cfg.seed)[0])
        return [s for i, s in enumerate(samples) if i in chosen]

    def subset_description(self, pt: PreparedTask, cfg: EvalConfig) -> str:
        if len(pt.samples) == pt.n_available:
            return "all samples"
        return (
            f"{len(pt.samples)} of {pt.n_available} samples drawn as OpenFlamingo draws them "
            f"(np.random.seed({cfg.seed}) + np.random.choice)"
        )

    def demo_selector(self, pt: PreparedTask, cfg: EvalConfig, loaded: LoadedModel) -> DemoSelector | None:
        k = demos_needed(pt.template, cfg.num_fewshot, cfg.fewshot_zero_mode)
        if not k:
            return None
        train = pt.task.train_samples()
        if cfg.fewshot_selection == "rices":  # also at 0-shot: OpenFlamingo picks the 2 text demos by RICES
            return OpenFlamingoRICES(loaded, train, cfg.out_dir / "cache", encoder=cfg.rices_encoder)
        d = draws(
            len(pt.population),
            len(train),
            k,
            cfg.seed,
            cfg.of_num_samples,
            cfg.of_query_set_size or DEFAULT_QUERY_SET_SIZE,
        )
        return fixed_demos(pt.population, train, d)

    def notes(self, pt: PreparedTask, cfg: EvalConfig) -> list[str]:
        return [
            f"protocol: openflamingo (seed {cfg.seed}; demos drawn as open_flamingo/eval/evaluate.py draws them "
            f"for a single-process run, query set {cfg.of_query_set_size or DEFAULT_QUERY_SET_SIZE})"
        ]

    def fingerprint_extras(self, cfg: EvalConfig) -> dict[str, Any]:
        return {"name": self.name, "seed": cfg.seed, **self.owned_settings(self.resolve(cfg))}

    def run_info(self, cfg: EvalConfig) -> dict[str, Any]:
        return {"protocol": self.name, **self.owned_settings(self.resolve(cfg))}
