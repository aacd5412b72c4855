"""Batching rules every family shares: the automatic batch size, rows grouped by image count and
sorted by length, and the out-of-memory back-off that halves a batch and remembers the smaller size.

Automatic batch size (``--batch-size auto``): on a GPU, start large and let the out-of-memory back-off
find what fits. On a CPU large batches are not free: past a few thousand tokens per forward the
activations and the KV cache spill out of the caches, and a 4-shot prompt under 3 beams at 21 rows
ran slower than at 8. So a CPU batch is also held to a budget, rows x beams x padded row length <=
:data:`TOKEN_BUDGET`, never below :data:`MIN_AUTO_ROWS` rows (batch 8 is the reference the automatic
size must not lose to). A row's length is what its family counts (``EvalModel.prompt_tokens``): text
tokens, plus for Flamingo the perceiver latents of each image, which cross-attention reads -- a
4-shot row carries five images. With 3072, the OpenFlamingo benchmark's 4-shot rows (159 on the v2
tiny model, 446 on the v1 fixture) run at 8 rows under 3 beams and on v1 greedily too, as batch 8
does (19 rows on v2 greedily), and 0-shot greedy rows (60 / 137) at 51 / 22.
``benchmarks/batch_policy.py`` measures auto against batch 8 on the OpenFlamingo benchmark's
configurations.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch

log = logging.getLogger("mmgpt_eval")


AUTO_START = {"cuda": 256, "cpu": 64}  # rows an automatic batch starts from (before the beams)
TOKEN_BUDGET = {"cpu": 3072}  # rows x beams x padded row length of one automatic batch (none: no budget)
MIN_AUTO_ROWS = 8


def auto_rows(device_type: str, num_beams: int = 1, prompt_tokens: int | None = None) -> int:
    """The automatic batch size in rows: start large -- over the beams, since beam search runs prompts
    x beams rows -- and let the out-of-memory back-off find what fits; with ``prompt_tokens`` (the
    batch's padded prompt length) and a token budget for the device, no more rows than the budget holds."""
    beams = max(1, num_beams)
    rows = max(MIN_AUTO_ROWS, AUTO_START.get(device_type, 64) // beams)
    budget = TOKEN_BUDGET.get(device_type)
    if budget and prompt_tokens:
        rows = min(rows, max(MIN_AUTO_ROWS, budget // (beams * prompt_tokens)))
    return rows


def batches_by_image_count(
    items: Sequence[Any],
    batch_size: int,
    tokens: Sequence[int] | None = None,
    rows_for: Callable[[int], int] | None = None,
) -> list[list[int]]:
    """Indices of ``items`` (each with ``.images`` and ``.text``) in batches of at most ``batch_size``
    with one image count per batch, sorted by image count and text length (little padding). With
    ``tokens`` (each item's prompt length) and ``rows_for`` (rows allowed at a padded length), a batch
    also stops growing when its padded length would allow fewer rows than it would then hold."""
    order = sorted(range(len(items)), key=lambda i: (len(items[i].images), len(items[i].text)))
    batches: list[list[int]] = []
    width = 0
    for i in order:
        if (
            batches
            and len(batches[-1]) < batch_size
            and len(items[batches[-1][0]].images) == len(items[i].images)
            and (rows_for is None or tokens is None or len(batches[-1]) < rows_for(max(width, tokens[i])))
        ):
            batches[-1].append(i)
            width = max(width, tokens[i]) if tokens is not None else 0
        else:
            batches.append([i])
            width = tokens[i] if tokens is not None else 0
    return batches


def halving_on_oom(gen: Any, fn: Any, items: Sequence[Any]) -> list[Any]:
    """``fn(items)``; on out-of-memory, ``fn`` on each half (recursively), and ``gen`` remembers the
    smaller batch as its cap (``gen._cap``; ``gen.oom_events`` counts the back-offs) for later batches.
    Generation and ranking both back off this way."""
    try:
        return fn(items)
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not is_oom(e) or len(items) == 1:
            raise
    gen.oom_events += 1
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = max(1, len(items) // 2)
    gen._cap = min(gen._cap or half, half)
    log.warning("out of memory with a batch of %d: retrying with batches of %d", len(items), half)
    return halving_on_oom(gen, fn, items[:half]) + halving_on_oom(gen, fn, items[half:])


def is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return "out of memory" in msg or "can't allocate memory" in msg
