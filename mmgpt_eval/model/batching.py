"""Batching rules every family shares: rows grouped by image count and sorted by length, and the
out-of-memory back-off that halves a batch and remembers the smaller size."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

log = logging.getLogger("mmgpt_eval")


AUTO_START = {"cuda": 256, "cpu": 64}  # rows an automatic batch starts from (before the beams)


def auto_rows(device_type: str, num_beams: int = 1) -> int:
    """The automatic batch size in rows: start large -- over the beams, since beam search runs prompts
    x beams rows -- and let the out-of-memory back-off find what fits."""
    return max(8, AUTO_START.get(device_type, 64) // max(1, num_beams))


def batches_by_image_count(items: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Indices of ``items`` (each with ``.images`` and ``.text``) in batches of at most ``batch_size``
    with one image count per batch, sorted by image count and text length (little padding)."""
    order = sorted(range(len(items)), key=lambda i: (len(items[i].images), len(items[i].text)))
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and \
                len(items[batches[-1][0]].images) == len(items[i].images):
            batches[-1].append(i)
        else:
            batches.append([i])
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
