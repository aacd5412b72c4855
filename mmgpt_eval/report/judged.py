"""Judged quality: the page's view of the runs' judge.json (:mod:`mmgpt_eval.judge_results`) -- per run
and task the judge's identity, each judge metric with its interval (candidate, baseline, paired delta),
win / tie / loss, agreement, parse failures and cost -- and the judgments shown beside a conversation
in the transcripts (scores, outcome, rationale; clipped, printed as escaped text like any model output).

A stale judge.json (its per-sample logs changed since judging) is a UserError: the report refuses."""

from __future__ import annotations

import json
from typing import Any

from ..io import sha256_file
from ..judge_results import JudgeResults, iter_judgments, judge_name, read_judge, same_judging
from .columns import RunColumn
from .limits import LIMITS, MAX_TABLE_ROWS
from .text import clip, fmt_delta, fmt_num, fmt_value

MAX_JUDGE_NOTES = 6  # judgments shown per answer (turn) in a transcript
RATIONALE_CHARS = 600
_ORDER = ("rubric_overall", "rubric_", "relative_score", "grade_score", "win_rate", "position_bias", "alpha_", "kappa_")


def judged_columns(cols: list[RunColumn]) -> dict[str, JudgeResults]:
    """Each column's judge.json by label (columns whose run was not judged are absent); a stale one raises."""
    out: dict[str, JudgeResults] = {}
    for c in cols:
        if c.res.run_dir is not None:
            j = read_judge(c.res.run_dir)
            if j is not None:
                out[c.label] = j
    return out


def _flat(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in d.items() if isinstance(d, dict) else []:
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flat(v, name + ".")
        else:
            out.append((clip(name, 80), clip(v if isinstance(v, str) else json.dumps(v, default=str), 200)))
    return out[:40]


def _rank(name: str) -> tuple[int, str]:
    for i, p in enumerate(_ORDER):
        if name == p or (p.endswith("_") and name.startswith(p)):
            return i, name
    return len(_ORDER), name


def _iv(iv: tuple[float, float] | None, signed: bool = False) -> str:
    if iv is None:
        return ""
    f = fmt_delta if signed else fmt_value
    return f"[{f(iv[0])}, {f(iv[1])}]"


def judged_view(judged: dict[str, JudgeResults]) -> dict[str, Any] | None:
    """The "Judged quality" section, or None when no run was judged."""
    if not judged:
        return None
    first = next(iter(judged.values()))
    note = ""
    if any(not same_judging(first, j) for j in judged.values()):
        note = "The runs were judged by different judges; their judge scores do not compare: " + "; ".join(
            f"{label}: {judge_name(j)}" for label, j in judged.items()
        )
    runs = []
    for ri, (label, j) in enumerate(judged.items()):
        tasks = []
        for ti, (task, tj) in enumerate(j.tasks.items()):
            rows = []
            for name in sorted((m for m in tj.metrics if not m.endswith("_delta")), key=_rank):
                d = f"{name}_delta"
                rows.append(
                    {
                        "metric": clip(name, 80),
                        "value": fmt_value(tj.metrics[name]),
                        "ci": _iv(tj.intervals.get(name)),
                        "base": fmt_value(tj.baseline_metrics.get(name)) if name in tj.baseline_metrics else "—",
                        "delta": fmt_delta(tj.metrics.get(d)) if d in tj.metrics else "—",
                        "delta_ci": _iv(tj.intervals.get(d), signed=True),
                    }
                )
            c = tj.counts
            wtl = ""
            if any(k in c for k in ("win", "tie", "loss")):
                wtl = f"{c.get('win', 0)} wins · {c.get('tie', 0)} ties · {c.get('loss', 0)} losses"
                if "win_rate" in tj.metrics:
                    wtl += f" · win rate {fmt_value(tj.metrics['win_rate'])} {_iv(tj.intervals.get('win_rate'))}"
            n_fail = c.get("parse_failures")
            rate = tj.metrics.get("parse_failure_rate")
            if rate is None and n_fail is not None and c.get("judgments"):
                rate = n_fail / c["judgments"]
            failures = (
                "—" if n_fail is None else f"{n_fail}" + (f" ({fmt_num(100 * rate)}%)" if rate is not None else "")
            )
            names = sorted({m for g in tj.breakdown.values() for m in g}, key=_rank)[:8]
            groups = list(tj.breakdown.items())
            breakdown = {
                "head": ["group", *[clip(m, 60) for m in names]],
                "rows": [[clip(g, 80), *[fmt_value(v.get(m)) for m in names]] for g, v in groups[:MAX_TABLE_ROWS]],
                "omitted": max(0, len(groups) - MAX_TABLE_ROWS),
            }
            tasks.append(
                {
                    "breakdown": breakdown if groups else None,
                    "task": clip(task, LIMITS["short"]),
                    "anchor": f"j{ri}-{ti}",
                    "n_items": tj.n_items,
                    "rows": rows[:60],
                    "wtl": wtl,
                    "failures": failures,
                    "counts": " · ".join(f"{clip(k, 40)} {v}" for k, v in list(c.items())[:30]),
                    "notes": [clip(n, 400) for n in tj.notes[:10]],
                }
            )
        base = j.baseline or {}
        runs.append(
            {
                "label": label,
                "identity": judge_name(j),
                "fields": _flat(j.judge),
                "repeats": j.repeats,
                "created": clip(j.created, 40),
                "baseline": clip(f"{base.get('label', '')} ({base.get('run_dir', '')})", 300) if base else "none",
                "cost": " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in j.cost.items()),
                "tasks": tasks,
            }
        )
    return {"note": note, "runs": runs}


def _head(line: Any) -> str:
    who = f"{line.mode} r{line.repeat}"
    if line.failure is not None:
        return f"{who}: no score ({clip(line.failure, 160)})"
    if line.mode == "pairwise":
        v = " / ".join("—" if x is None else clip(x, 20) for x in (line.verdicts or ()))
        return f"{who}: {line.outcome or '—'}" + (f" (verdicts {v})" if v else "")
    scores = " · ".join(f"{clip(k, 40)} {v}" for k, v in list((line.scores or {}).items())[:12])
    return f"{who}: {scores or '—'}"


def judged_baseline(j: JudgeResults, task: str, base: RunColumn) -> bool:
    """Whether ``j`` judged ``base``'s answers of ``task`` as its baseline (the same per-sample log)."""
    tj = j.tasks.get(task)
    if tj is None or tj.baseline_samples_sha256 is None or base.res.run_dir is None:
        return False
    log = base.res.run_dir / tj.samples_file
    return log.is_file() and sha256_file(log) == tj.baseline_samples_sha256


def judge_notes(
    j: JudgeResults, task: str, ids: set[str], side: str = "candidate"
) -> dict[tuple[str, int], list[dict[str, str]]]:
    """The judgments of ``side``'s answers (``candidate``, or the ``baseline`` judged beside it) to ``ids``
    by (id, turn): a heading (mode, repeat, scores or outcome) and the rationale, clipped; at most
    :data:`MAX_JUDGE_NOTES` per turn."""
    out: dict[tuple[str, int], list[dict[str, str]]] = {}
    if task not in j.tasks:
        return out
    for line in iter_judgments(j, task):
        if line.run != side or line.id not in ids:
            continue
        notes = out.setdefault((line.id, line.turn), [])
        if len(notes) < MAX_JUDGE_NOTES:
            notes.append({"head": _head(line), "rationale": clip(line.rationale, RATIONALE_CHARS)})
    return out
