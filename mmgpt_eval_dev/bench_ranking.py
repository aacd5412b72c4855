"""Ranking benchmark (``mmgpt-eval bench --ranking``): OpenFlamingo's ImageNet classification workload,
scored by OpenFlamingo's own loop and by mmgpt-eval's :class:`~mmgpt_eval.model.rank.Ranker`, in one
process, on the same model.

Workload (what ``open_flamingo/eval/evaluate.py``'s ``evaluate_classification`` does for ImageNet at
"0-shot"): ``n_images`` distinct easy-VQA test images (in dataset order) stand in for the ImageNet
validation images; every one is ranked against the 1,000 ImageNet class names of the installed
open-flamingo package (``class_names``: the first N of them, for tests and smoke runs). Each query gets
two demos drawn per row, as ``sample_batch_demos_from_query_set`` draws them (``random.Random(seed)``):
a class name and an easy-VQA TRAIN image. The prompt is the ``of-imagenet`` template's 0-shot form --
the demos' ``Output:{class}<|endofchunk|>`` text with ``<image>`` removed, joined with no separator,
then ``<image>Output:`` -- and the images are passed as OpenFlamingo passes them at 0-shot:
``[demo 1, demo 2, query]`` (3 images, 1 ``<image>`` token). Demo class names differ in length, so
contexts of one batch are left-padded.

Loops (every pass starts cold: images are read and preprocessed again, the Ranker's feature and
candidate-token caches are empty):

1. ``openflamingo-rank``: :meth:`OpenFlamingoEvalModel.get_rank_classifications` with
   ``use_cache=True, normalize_length=True`` on batches of 8 in dataset order -- OpenFlamingo's loop:
   the context cached once per batch, then every class name's tokens fed one at a time against it
   (``cached_mask="extended"``: the correct mask on padded rows; see
   :mod:`mmgpt_eval_dev.peers.openflamingo`).
2. ``mmgpt-eval-rank-b8``: ``Ranker.score(inputs, batch_size=8)`` -- the same batch size.
3. ``mmgpt-eval-rank-auto``: ``Ranker.score(inputs, batch_size=Generator.batch_cap(0))``
   (``--batch-size auto``; or the batch size given).

Scores compared: each image's mean log-probability per class-name token (OpenFlamingo's
``normalize_length=True``), and the top-5 class order per image (a stable sort: ties keep class order).
``outputs_identical``: every Ranker loop has OpenFlamingo's top-5 order on every image and every
log-prob within ``TOLERANCE``. The upstream mask (``cached_mask="upstream"``: ``attention_mask=None``
for the cached class-name tokens, as OpenFlamingo's code does) is run once, untimed, and its differences
from the correct mask are reported for information.

Timing: an untimed warm-up of every loop (the first ``warmup_images`` contexts against the first
``warmup_classes`` class names), then ``repeats`` rounds; each round times every loop once, the loops
interleaved so that a slow phase of a shared machine hits all of them. Figures: seconds of every pass,
median, min-max spread, images/s, (image, class) scores/s, peak memory; ratios = OpenFlamingo's median /
mmgpt-eval's median, and the same ratio per round (paired) for its spread.
"""

from __future__ import annotations

import functools
import random
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from mmgpt_eval.errors import UserError
from mmgpt_eval.model.build import LoadedModel
from mmgpt_eval.model.generate import Generator
from mmgpt_eval.model.rank import Ranker, RankInput
from mmgpt_eval.results import peak_memory
from mmgpt_eval.templates import get_template, render_fewshot

from .bench import timed_call

TOLERANCE = 1e-4  # max |log-prob difference| accepted as "identical"
TOP_K = 5
OPENFLAMINGO_BATCH = 8  # evaluate.py's default --batch_size
TARGET_RATIO = 3.0  # the target at --batch-size auto
OF_LOOP = "openflamingo-rank"


@dataclass
class Context:
    """One query image with its 0-shot prompt and the images OpenFlamingo passes with it."""

    text: str
    images: list[Any]  # ImageRef: [demo 1, demo 2, query]
    demo_classes: list[str]

    @property
    def keys(self) -> list[str]:
        return [im.key for im in self.images]


def class_names(n: int | None = None) -> list[str]:
    """The ImageNet class names of the installed open-flamingo (the first ``n``; all 1000 by default)."""
    from mmgpt_eval.taskapi.datasets import imagenet_classnames

    names = list(imagenet_classnames())
    return names if not n else names[:n]


@functools.lru_cache(maxsize=2)
def _distinct_images(split: str) -> tuple[Any, ...]:
    from mmgpt_eval.taskapi.datasets import load_easyvqa_split

    seen: dict[str, Any] = {}
    for s in load_easyvqa_split(split):
        seen.setdefault(s.images[0].key, s.images[0])
    return tuple(seen.values())


def check_image_count(n_images: int) -> None:
    """A one-line error when easy-VQA's test split has fewer distinct images than ``n_images`` (checked
    before any model is loaded)."""
    n = len(_distinct_images("test"))
    if not 1 <= n_images <= n:
        raise UserError(
            f"bench --ranking: --limit must be between 1 and {n} (easy-VQA's distinct test images), got {n_images}"
        )


def build_workload(n_images: int = 32, seed: int = 0, names: Sequence[str] | None = None) -> list[Context]:
    """``n_images`` distinct easy-VQA test images, each with OpenFlamingo's ImageNet 0-shot prompt: two
    text-only demos (a class name drawn from ``names`` and an easy-VQA train image each, drawn per row
    with ``random.Random(seed)``), demo images passed before the query image."""
    names = list(names) if names is not None else class_names()
    queries = _distinct_images("test")
    if n_images > len(queries):
        raise UserError(f"easy-VQA's test split has {len(queries)} distinct images, asked for {n_images}")
    pool = _distinct_images("train")
    rng = random.Random(seed)
    template = get_template("of-imagenet")
    out = []
    for q in queries[:n_images]:
        demo_images = rng.sample(pool, 2)  # as random.sample(query_set, 2) per row in evaluate.py
        demo_classes = [rng.choice(names) for _ in demo_images]
        text, n_demo_images = render_fewshot(
            template, {}, [{"answer": c} for c in demo_classes], zero_shot_text_demos=True
        )
        assert n_demo_images == 0 and text.count("<image>") == 1
        out.append(Context(text, demo_images + [q], demo_classes))
    return out


# ------------------------------------------------------------------------------------------ loops
def loop_openflamingo(
    eval_model, contexts: Sequence[Context], names: Sequence[str], batch_size: int = OPENFLAMINGO_BATCH
) -> torch.Tensor:
    """OpenFlamingo's loop: batches in dataset order, images opened and preprocessed per batch,
    ``get_rank_classifications(use_cache=True, normalize_length=True)``. (N, C) mean log-probs."""
    rows = []
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start : start + batch_size]
        images = [[im.open() for im in c.images] for c in batch]
        rows.append(
            eval_model.get_rank_classifications(
                [c.text for c in batch], images, list(names), use_cache=True, normalize_length=True
            ).float()
        )
    return torch.cat(rows)


def loop_ranker(
    gen: Generator,
    contexts: Sequence[Context],
    names: Sequence[str],
    batch_size: int,
    stats: dict[str, int] | None = None,
) -> torch.Tensor:
    """mmgpt-eval's path: one :class:`Ranker` (cold caches) over every context. (N, C) mean log-probs."""
    gen.clear_caches()
    ranker = Ranker(gen)
    inputs = [RankInput(c.text, list(c.images), list(names), c.keys) for c in contexts]
    scores = ranker.score(inputs, batch_size=batch_size)
    if stats is not None:
        stats.update(candidate_forwards=ranker.candidate_forwards, candidate_rows=ranker.candidate_rows)
    return torch.tensor([[s.mean_logprob for s in row] for row in scores], dtype=torch.float64)


def top_k_order(scores: torch.Tensor, k: int = TOP_K) -> list[list[int]]:
    """Per row, the indices of the ``k`` best scores, best first; ties keep index order."""
    order = torch.sort(scores.double(), dim=1, descending=True, stable=True).indices[:, :k]
    return order.tolist()


def compare(ref: torch.Tensor, other: torch.Tensor, k: int = TOP_K) -> dict[str, Any]:
    a, b = top_k_order(ref, k), top_k_order(other, k)
    diff = (ref.double() - other.double()).abs()
    return {
        "images_with_different_top5": sum(x != y for x, y in zip(a, b)),
        "max_abs_logprob_diff": float(diff.max()) if diff.numel() else 0.0,
        "images_with_logprob_diff_over_tolerance": int((diff > TOLERANCE).any(dim=1).sum()),
    }


def padded_rows(tokenizer, contexts: Sequence[Context], batch_size: int = OPENFLAMINGO_BATCH) -> int:
    """Contexts that OpenFlamingo's batches of ``batch_size`` left-pad (shorter than their batch's longest)."""
    n = 0
    for start in range(0, len(contexts), batch_size):
        lens = [len(tokenizer(c.text)["input_ids"]) for c in contexts[start : start + batch_size]]
        n += sum(x < max(lens) for x in lens)
    return n


# ------------------------------------------------------------------------------------------ benchmark
def run_ranking_bench(
    loaded: LoadedModel,
    n_images: int = 32,
    n_classes: int | None = None,
    batch_size: int = 0,
    repeats: int = 3,
    seed: int = 0,
    warmup_images: int = 8,
    warmup_classes: int = 16,
    upstream_mask: bool = True,
) -> dict[str, Any]:
    """Time the three loops (see the module docstring); ``batch_size`` is the Ranker's "auto" loop's
    batch size (0: ``Generator.batch_cap(0)``, what ``--batch-size auto`` starts with)."""
    from .peers.openflamingo import OpenFlamingoEvalModel

    names = class_names(n_classes)
    contexts = build_workload(n_images, seed, names)
    gen = Generator(loaded)
    auto_bs = gen.batch_cap(batch_size)
    em = OpenFlamingoEvalModel(loaded, cached_mask="extended", record=False)
    stats: dict[str, dict[str, int]] = {"mmgpt-eval-rank-b8": {}, "mmgpt-eval-rank-auto": {}}
    batch_sizes = {
        OF_LOOP: OPENFLAMINGO_BATCH,
        "mmgpt-eval-rank-b8": OPENFLAMINGO_BATCH,
        "mmgpt-eval-rank-auto": auto_bs,
    }
    fns: dict[str, Callable[[Sequence[Context], Sequence[str]], torch.Tensor]] = {
        OF_LOOP: lambda cs, ns: loop_openflamingo(em, cs, ns, OPENFLAMINGO_BATCH),
        "mmgpt-eval-rank-b8": lambda cs, ns: loop_ranker(gen, cs, ns, OPENFLAMINGO_BATCH, stats["mmgpt-eval-rank-b8"]),
        "mmgpt-eval-rank-auto": lambda cs, ns: loop_ranker(gen, cs, ns, auto_bs, stats["mmgpt-eval-rank-auto"]),
    }
    if warmup_images and warmup_classes:
        for fn in fns.values():  # allocator, first-call costs
            fn(contexts[:warmup_images], names[:warmup_classes])
    times: dict[str, list[float]] = {k: [] for k in fns}
    outputs: dict[str, torch.Tensor] = {}
    peaks: dict[str, dict[str, Any]] = {}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            out, sec = timed_call(fn, contexts, names)
            times[name].append(sec)
            outputs[name] = out
            peaks[name] = peak_memory()
    ref = outputs[OF_LOOP]
    comparisons = {name: compare(ref, out) for name, out in outputs.items() if name != OF_LOOP}
    ranks_identical = all(c["images_with_different_top5"] == 0 for c in comparisons.values())
    max_diff = max((c["max_abs_logprob_diff"] for c in comparisons.values()), default=0.0)

    class_tokens = [len(loaded.tokenizer(n, add_special_tokens=False)["input_ids"]) for n in names]
    n_batches = -(-len(contexts) // OPENFLAMINGO_BATCH)
    forwards = {OF_LOOP: n_batches * (1 + sum(class_tokens))}
    loops: dict[str, Any] = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        loops[name] = {
            "batch_size": batch_sizes[name],
            "seconds": [round(t, 4) for t in ts],
            "median_s": round(med, 4),
            "min_s": round(min(ts), 4),
            "max_s": round(max(ts), 4),
            "images_per_s": round(len(contexts) / med, 3),
            "scores_per_s": round(len(contexts) * len(names) / med, 1),
            "peak_memory": peaks[name],
        }
        if name in stats:
            loops[name]["candidate_forwards"] = stats[name].get("candidate_forwards")
            loops[name]["candidate_rows"] = stats[name].get("candidate_rows")
        else:
            loops[name]["forwards"] = forwards[name]

    def ratio(name: str) -> float:
        return round(loops[OF_LOOP]["median_s"] / loops[name]["median_s"], 2)

    def paired(name: str) -> list[float]:
        return [round(a / b, 2) for a, b in zip(times[OF_LOOP], times[name])]

    summary: dict[str, Any] = {
        "workload": "OpenFlamingo ImageNet 0-shot (of-imagenet, 2 text-only demos, demo images passed)",
        "images": len(contexts),
        "distinct_images": len({c.images[-1].key for c in contexts}),
        "images_per_context": 3,
        "classes": len(names),
        "class_tokens": sum(class_tokens),
        "padded_contexts_at_batch_8": padded_rows(loaded.tokenizer, contexts),
        "seed": seed,
        "repeats": max(1, repeats),
        "warmup": {"images": min(warmup_images, len(contexts)), "classes": min(warmup_classes, len(names))},
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "loops": loops,
        "comparisons": comparisons,
        "ranks_identical": ranks_identical,
        "max_abs_logprob_diff": max_diff,
        "tolerance": TOLERANCE,
        "outputs_identical": ranks_identical and max_diff <= TOLERANCE,
        "ratio_vs_openflamingo_rank": ratio("mmgpt-eval-rank-auto"),
        "ratio_vs_openflamingo_rank_matched_batch": ratio("mmgpt-eval-rank-b8"),
        "paired_ratios": {"auto": paired("mmgpt-eval-rank-auto"), "matched_batch": paired("mmgpt-eval-rank-b8")},
        "target_ratio": TARGET_RATIO,
    }
    summary["target_met"] = summary["ratio_vs_openflamingo_rank"] >= TARGET_RATIO
    if upstream_mask:  # information only: OpenFlamingo's attention_mask=None on the cached class-name tokens
        up = OpenFlamingoEvalModel(loaded, cached_mask="upstream", record=False)
        summary["upstream_mask"] = compare(ref, loop_openflamingo(up, contexts, names))
    return summary
