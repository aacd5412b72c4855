"""Throughput benchmark: the same model, data and greedy settings run three ways, in one process.

1. ``mmgpt-eval``: the runner's path -- prompts sorted by image count, length and image, large
   batches (``--batch-size``), vision features once per distinct image, the prompt prefix a batch
   shares computed once, KV cache, inference mode.
2. ``openflamingo-loop``: like ``open_flamingo/eval``: batches of 8 in dataset order, every row's
   image encoded by ``Flamingo.generate`` (no reuse, no bucketing).
3. ``per-sample-loop``: like MultiModal-GPT's demo: one prompt at a time.

All three must produce identical greedy token ids (checked and reported). Figures: samples/s,
generated tokens/s, peak memory, and the ratios of (1) over (2) and (3), each the median of
``repeats`` timed passes after an untimed warm-up on the first ``warmup`` items. Every pass starts
cold: images are read and preprocessed again (no pixels kept from an earlier pass).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from mmgpt_eval.model.build import LoadedModel
from mmgpt_eval.model.generate import GenerationSettings, Generator, PromptInput
from mmgpt_eval.results import peak_memory
from mmgpt_eval.taskapi import Sample


@dataclass
class Item:
    prompt: str
    image: Any  # ImageRef
    key: str


def _items(samples: list[Sample], template) -> list[Item]:
    return [Item(template.render(question=s.fields["question"]), s.images[0], s.images[0].key) for s in samples]


def loop_mmgpt_eval(
    gen: Generator, items: list[Item], settings: GenerationSettings, stop: str, batch_size: int
) -> list[list[int]]:
    """The runner's order and calls (runner.run_task / process_chunk): sort by prompt length and
    image, then chunks of ``batch_size`` through ``Generator.generate_grouped``."""
    gen.clear_caches()  # every pass starts cold
    prompts = [PromptInput(it.prompt, [it.image], [it.key]) for it in items]
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i].text), items[i].key))
    out: list[list[int] | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, g in zip(idx, gen.generate_grouped([prompts[i] for i in idx], settings, stop, batch_size)):
            out[i] = g.token_ids
    return out  # type: ignore[return-value]


def _trim(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos in ids else ids


@torch.inference_mode()
def loop_openflamingo(
    gen: Generator, items: list[Item], settings: GenerationSettings, stop: str, batch_size: int = 8
) -> list[list[int]]:
    """open_flamingo/eval style: dataset order, batches of 8, pixels for every row, no feature reuse."""
    lm = gen.lm
    eos = gen.eos_token_id(stop)
    out: list[list[int]] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        enc = lm.tokenizer([b.prompt for b in batch], return_tensors="pt", padding=True)
        px = torch.stack([lm.image_processor(b.image.open()) for b in batch])[:, None, None]
        seq = lm.model.generate(
            px.to(lm.device, lm.dtype),
            enc["input_ids"].to(lm.device),
            attention_mask=enc["attention_mask"].to(lm.device),
            eos_token_id=eos,
            pad_token_id=lm.tokenizer.pad_token_id,
            **settings.hf_kwargs(),
        )
        n = enc["input_ids"].shape[1]
        out.extend(_trim(row[n:].tolist(), eos) for row in seq)
    return out


@torch.inference_mode()
def loop_per_sample(gen: Generator, items: list[Item], settings: GenerationSettings, stop: str) -> list[list[int]]:
    """MultiModal-GPT demo style: one prompt, one image, one generate call at a time."""
    return loop_openflamingo(gen, items, settings, stop, batch_size=1)


def sync_device() -> None:
    """Wait for the GPU's queued work, so that a clock reading covers it (nothing to do without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_call(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(fn(*args), seconds)``, the device synchronised before and after (shared by every benchmark)."""
    sync_device()
    t0 = time.perf_counter()
    out = fn(*args)
    sync_device()
    return out, time.perf_counter() - t0


def _time(
    fn: Callable[[list[Item]], list[list[int]]], items: list[Item], repeats: int, warmup: int
) -> tuple[list[list[int]], list[float]]:
    if warmup:
        fn(items[:warmup])  # warm-up (allocator, first-call costs)
    times: list[float] = []
    out: list[list[int]] = []
    for _ in range(repeats):
        out, sec = timed_call(fn, items)
        times.append(sec)
    return out, times


def run_bench(
    loaded: LoadedModel,
    samples: list[Sample],
    template,
    settings: GenerationSettings,
    batch_size: int = 64,
    repeats: int = 3,
    loops: tuple[str, ...] = ("mmgpt-eval", "openflamingo-loop", "per-sample-loop"),
    warmup: int = 64,
    share_prefix: bool = True,
) -> dict[str, Any]:
    gen = Generator(loaded, share_prefix=share_prefix)
    items = _items(samples, template)
    stop = template.stop
    fns: dict[str, Callable[[list[Item]], list[list[int]]]] = {
        "mmgpt-eval": lambda its: loop_mmgpt_eval(gen, its, settings, stop, batch_size),
        "openflamingo-loop": lambda its: loop_openflamingo(gen, its, settings, stop),
        "per-sample-loop": lambda its: loop_per_sample(gen, its, settings, stop),
    }
    results: dict[str, Any] = {}
    outputs: dict[str, list[list[int]]] = {}
    for name in loops:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        out, times = _time(fns[name], items, repeats, warmup)
        outputs[name] = out
        med = statistics.median(times)
        tokens = sum(len(o) for o in out)
        results[name] = {
            "seconds": [round(t, 4) for t in times],
            "median_s": round(med, 4),
            "samples_per_s": round(len(items) / med, 2),
            "tokens_per_s": round(tokens / med, 1),
            "generated_tokens": tokens,
            "peak_memory": peak_memory(),
        }
    ref = outputs[loops[0]]
    identical = all(outputs[n] == ref for n in loops)
    mismatches = {n: sum(a != b for a, b in zip(outputs[n], ref)) for n in loops}
    summary: dict[str, Any] = {
        "samples": len(items),
        "distinct_images": len({it.key for it in items}),
        "batch_size": batch_size,
        "repeats": repeats,
        "warmup_items": min(warmup, len(items)),
        "share_prefix": share_prefix,
        "settings": settings.to_dict(),
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "loops": results,
        "outputs_identical": identical,
        "mismatched_samples": mismatches,
    }
    base = results[loops[0]]["median_s"]
    if "openflamingo-loop" in results:
        summary["ratio_vs_openflamingo_loop"] = round(results["openflamingo-loop"]["median_s"] / base, 2)
    if "per-sample-loop" in results:
        summary["ratio_vs_per_sample_loop"] = round(results["per-sample-loop"]["median_s"] / base, 2)
    return summary
