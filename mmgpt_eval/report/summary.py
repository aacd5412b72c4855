"""The headline (primary metric per task) and the per-task summary of every metric: each run's value
and, with a baseline, the paired delta with its 95% interval and p-value
(:func:`mmgpt_eval.compare.compare_runs` on the cached records)."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .columns import RunColumn
from .limits import LIMITS, MAX_METRICS_PER_TASK
from .text import clip, fmt_delta, fmt_p, fmt_value

_CSS_CLASS = {True: "good", False: "bad", None: "ns"}


def _metric_rows(tr, limit: int = MAX_METRICS_PER_TASK) -> list[str]:
    names = list(tr.metrics)
    prim = tr.primary_metric
    names = ([prim] if prim in names else []) + [m for m in names if m != prim]
    return names[:limit]


def _compare(
    base: RunColumn, col: RunColumn, task: str, intersect: bool, n_resamples: int
) -> tuple[dict[str, Any], str]:
    from ..compare import compare_runs

    try:
        mcs = compare_runs(
            base.cached_results(), col.cached_results(), intersect=intersect, tasks=[task], n_resamples=n_resamples
        )
    except UserError as e:
        return {}, str(e)
    except (KeyError, ValueError, TypeError, AttributeError) as e:  # malformed per-sample values
        return {}, f"task {task}: comparison failed ({type(e).__name__}: {e})"
    return {m.metric: m for m in mcs}, ""


def _comp_cell(mc, unit: str) -> dict[str, Any]:
    if mc is None:
        return {"delta": "—", "ci": "", "p": "", "cls": "ns", "n": "", "verdict": "", "title": "", "dagger": False}
    has_ci = mc.ci_low is not None and mc.ci_high is not None
    imp = mc.improved
    verdict = {True: "better", False: "worse", None: "n.s." if has_ci else ""}[imp]
    return {
        "delta": fmt_delta(mc.delta, unit),
        "ci": f"[{fmt_delta(mc.ci_low)}, {fmt_delta(mc.ci_high)}]" if has_ci else "no interval",
        "p": fmt_p(mc.p_value),
        "cls": _CSS_CLASS[imp] if has_ci else "ns",
        "n": f"n={mc.n}" + (f", {mc.n_dropped} n/a" if mc.n_dropped else "") if has_ci else "",
        "verdict": verdict,
        "title": f"{mc.test or ''} {'higher' if mc.higher_is_better else 'lower'} is better".strip()
        + (f"; {mc.n} paired samples" if has_ci else ""),
        # the corpus-level delta lies outside the per-sample interval: say so (footnote in the page)
        "dagger": bool(has_ci and mc.delta is not None and not (mc.ci_low - 1e-9 <= mc.delta <= mc.ci_high + 1e-9)),
    }


def summary(cols: list[RunColumn], base: RunColumn | None, tasks: list[str], intersect: bool, n_resamples: int):
    """(headline rows, per-task summary tables)."""
    cands = [c for c in cols if not c.is_baseline]
    headline, out = [], []
    for ti, task in enumerate(tasks):
        trs = [c.res.tasks.get(task) for c in cols]
        ref = next(t for t in trs if t is not None)
        comps: list[tuple[dict[str, Any], str]] = []
        if base is not None:
            for c in cands:
                if task in c.res.tasks and task in base.res.tasks:
                    comps.append(_compare(base, c, task, intersect, n_resamples))
                else:
                    comps.append(({}, f"task {task} is not in both runs"))
        rows = []
        for m in _metric_rows(ref):
            info = next((t.metric_info.get(m) for t in trs if t is not None and m in t.metric_info), None) or {}
            unit = info.get("unit", "") or ""
            row = {
                "metric": m,
                "primary": m == ref.primary_metric,
                "arrow": "↑" if info.get("higher_is_better", True) else "↓",
                "desc": clip(info.get("description", ""), LIMITS["cell"]),
                "kind": info.get("kind", ""),
                "values": [fmt_value(t.metrics.get(m), unit) if t is not None and m in t.metrics else "—" for t in trs],
                "comps": [_comp_cell(cm.get(m), unit) if not err else None for cm, err in comps],
            }
            rows.append(row)
            if row["primary"]:
                headline.append({"task": task, "anchor": f"t{ti}", **row})
        notes = sorted({mc.note for cm, _ in comps for mc in cm.values() if mc.note and "corpus-only" not in mc.note})
        out.append(
            {
                "task": task,
                "anchor": f"t{ti}",
                "n": [str(t.n_samples) if t is not None else "—" for t in trs],
                "rows": rows,
                "omitted": max(0, len(ref.metrics) - len(rows)),
                "errors": [{"label": c.label, "msg": clip(err, 600)} for c, (_, err) in zip(cands, comps) if err],
                "notes": [clip(n, 600) for n in notes],
            }
        )
    return headline, out
