"""Reading one per-sample record for the page: its score on a per-sample metric, its predictions and
references as clipped text. Every field is type-checked: records come from files."""

from __future__ import annotations

from typing import Any

from ..records import SampleRecord
from ..taskapi.reporting import Transcript
from .limits import LIMITS, MAX_TURNS
from .text import clip, number, to_text


def per_sample_key(tr) -> tuple[str | None, str | None, dict[str, Any]]:
    """(metric, per-sample key, info) to rank samples by: the primary metric, else the first per-sample one."""
    info_all = tr.metric_info if isinstance(tr.metric_info, dict) else {}
    order = [tr.primary_metric] + [m for m in info_all if m != tr.primary_metric]
    for m in order:
        info = info_all.get(m)
        if isinstance(info, dict) and info.get("per_sample") and info.get("kind") in ("binary", "continuous", "corpus"):
            return m, str(info["per_sample"]), info
    return None, None, {}


def sample_value(rec: SampleRecord | None, key: str) -> float | None:
    m = rec.metrics if rec is not None else None
    if not isinstance(m, dict):
        return None
    v = m.get(key)
    if isinstance(v, bool):
        return float(v)
    return number(v)


def prediction(rec: SampleRecord | None, output_key: str | None = None) -> str:
    """The record's prediction, or that of its request ``output_key``; ``—`` when there is none."""
    if rec is None:
        return "—"
    if output_key is None:
        return clip(rec.prediction, LIMITS["prediction"])
    out = rec.outputs.get(output_key) if isinstance(rec.outputs, dict) else None
    if not isinstance(out, dict):
        return "—"
    return clip(out.get("prediction", ""), LIMITS["prediction"])


def reference_lines(refs: Any, transcript: Transcript | None = None) -> list[str]:
    """References as a few clipped lines: a transcript's turns as ``T0 [kind] instruction → reference``;
    a list of strings counted (``yes ×7 | no ×3``); anything else as text."""
    lim = LIMITS["reference"]
    if transcript is not None and transcript.turns:
        out = [
            clip(f"T{i} [{t.kind}] {t.instruction} → {'—' if t.reference is None else t.reference}", lim)
            for i, t in enumerate(transcript.turns[:MAX_TURNS])
        ]
        if len(transcript.turns) > MAX_TURNS:
            out.append(f"[… {len(transcript.turns) - MAX_TURNS} more references omitted …]")
        return out
    if refs is None or refs == []:
        return []
    if isinstance(refs, list) and not any(isinstance(r, (dict, list)) for r in refs):
        counts: dict[str, int] = {}
        for r in refs:
            counts[to_text(r)] = counts.get(to_text(r), 0) + 1
        items = sorted(counts.items(), key=lambda kv: -kv[1])
        parts = [f"{k} ×{n}" if n > 1 else k for k, n in items[:10]]
        s = " | ".join(parts) + (f" | [… {len(items) - 10} more]" if len(items) > 10 else "")
        return [clip(s, lim)]
    if isinstance(refs, list):
        out = [clip(to_text(r), lim) for r in refs[:MAX_TURNS]]
        if len(refs) > MAX_TURNS:
            out.append(f"[… {len(refs) - MAX_TURNS} more references omitted …]")
        return out
    return [clip(to_text(refs), lim)]
