"""Provenance per run: results file, command, versions, git commit, host, model and checkpoint
(step / epoch included), seed and settings, per task template / generation / samples / fingerprint /
throughput, wall time and memory. Rows that differ between runs are highlighted; package versions are
folded (open when some differ)."""

from __future__ import annotations

from typing import Any, Callable

from ..results import RunResults
from .columns import RunColumn, step_epoch
from .text import cell, clip


def provenance(cols: list[RunColumn], tasks: list[str]) -> dict[str, Any]:
    rows: list[tuple[str, list[Any]]] = []

    def get(d: Any, *path: str) -> Any:
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None
        return d

    def add(name: str, fn: Callable[..., Any]) -> None:  # fn(run); some bind a loop value as a default argument
        vals = []
        for c in cols:
            try:
                vals.append(fn(c.res))
            except Exception:  # noqa: BLE001 - provenance is best effort
                vals.append(None)
        rows.append((name, vals))

    add("results file", lambda r: str(r.path) if r.path else None)
    add("created", lambda r: r.created)
    add("command", lambda r: " ".join(map(str, get(r.run, "argv") or [])) or None)
    versions: list[str] = []
    for c in cols:
        v = get(c.res.provenance, "versions")
        if isinstance(v, dict):
            versions += [k for k in v if k not in versions]
    for k in versions:
        add(f"version: {k}", lambda r, k=k: get(r.provenance, "versions", k))

    def git(r: RunResults) -> Any:
        g = get(r.provenance, "git")
        if not isinstance(g, dict) or not g.get("hash"):
            return None
        return f"{str(g['hash'])[:12]}{' (dirty)' if g.get('dirty') else ''}"

    add("git commit", git)
    add("host", lambda r: get(r.provenance, "host"))
    add("platform", lambda r: get(r.provenance, "platform"))
    add("python", lambda r: get(r.provenance, "python"))
    add("accelerator", lambda r: get(r.provenance, "cuda") or "cpu")
    add("torch threads", lambda r: get(r.provenance, "torch_threads"))
    add(
        "model spec",
        lambda r: (
            " · ".join(str(x) for x in (get(r.model, "model_spec", "name"), get(r.model, "model_spec", "source")) if x)
            or None
        ),
    )
    add(
        "precision / device",
        lambda r: f"{get(r.model, 'model_spec', 'precision')} / {get(r.model, 'device')} ({get(r.model, 'dtype')})",
    )
    add("parameters", lambda r: f"{int(get(r.model, 'parameters')):,}" if get(r.model, "parameters") else None)
    add("checkpoint", lambda r: get(r.model, "checkpoint", "path"))
    add(
        "checkpoint format",
        lambda r: (
            " / ".join(
                str(x) for x in (get(r.model, "checkpoint", "format"), get(r.model, "checkpoint", "layout")) if x
            )
            or None
        ),
    )
    add("checkpoint sha256", lambda r: get(r.model, "checkpoint", "sha256"))
    add(
        "checkpoint step / epoch",
        lambda r: " / ".join(cell(x) for x in step_epoch(r)) if any(x is not None for x in step_epoch(r)) else None,
    )
    add(
        "LoRA",
        lambda r: (lambda lo: f"r={lo.get('r')} alpha={lo.get('alpha')}" if isinstance(lo, dict) else None)(
            get(r.model, "checkpoint", "lora")
        ),
    )
    add("OpenFlamingo base sha256", lambda r: get(r.model, "openflamingo_checkpoint_sha256"))
    add("seed", lambda r: get(r.run, "seed"))
    add("batch size / limit", lambda r: f"{get(r.run, 'batch_size')} / {get(r.run, 'limit')}")
    add("few-shot", lambda r: get(r.run, "num_fewshot"))
    for task in tasks:

        def tget(r: RunResults, task: str = task):
            return r.tasks.get(task)

        add(
            f"{task}: template",
            lambda r, tg=tget: (
                lambda t: f"{t.template.get('name')} {str(t.template.get('sha256', ''))[:12]}" if t else None
            )(tg(r)),
        )
        add(
            f"{task}: generation",
            lambda r, tg=tget: (
                lambda t: (
                    ", ".join(
                        f"{k}={v}"
                        for k, v in t.generation.items()
                        if k in ("max_new_tokens", "num_beams", "do_sample", "temperature", "seed")
                    )
                    if t
                    else None
                )
            )(tg(r)),
        )
        add(
            f"{task}: samples", lambda r, tg=tget: (lambda t: f"{t.n_samples} of {t.n_available}" if t else None)(tg(r))
        )
        add(
            f"{task}: fingerprint", lambda r, tg=tget: (lambda t: str(t.fingerprint)[:16] or None if t else None)(tg(r))
        )
        add(
            f"{task}: throughput",
            lambda r, tg=tget: (
                lambda t: (
                    (
                        f"{cell(t.timing.get('samples_per_s'))} samples/s, "
                        f"{cell(t.timing.get('tokens_per_s'))} tokens/s, "
                        f"{cell(t.timing.get('wall_s'))} s"
                    )
                    if t and t.timing
                    else None
                )
            )(tg(r)),
        )
    add("wall time (s)", lambda r: get(r.provenance, "wall_time_s"))
    add("peak CPU RSS (MB)", lambda r: get(r.provenance, "peak_memory", "cpu_rss_mb"))
    add("peak GPU memory (MB)", lambda r: get(r.provenance, "peak_memory", "gpu_allocated_mb"))
    out_rows: list[dict[str, Any]] = []
    ver_rows: list[dict[str, Any]] = []
    for name, vals in rows:
        if all(v is None for v in vals):
            continue
        cells = [cell(v) for v in vals]
        differs = len(cols) > 1 and len(set(cells)) > 1 and name not in ("results file", "created", "command")
        is_ver = name.startswith("version: ")
        row = {"name": clip(name[len("version: ") :] if is_ver else name, 120), "cells": cells, "differs": differs}
        (ver_rows if is_ver else out_rows).append(row)
    return {
        "labels": [c.label for c in cols],
        "rows": out_rows,
        "versions": ver_rows,
        "versions_differ": sum(1 for r in ver_rows if r["differs"]),
    }
