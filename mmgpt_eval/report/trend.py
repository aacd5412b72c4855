"""The trend across checkpoints: each task's primary metric against the checkpoint step
(:func:`mmgpt_eval.compare.checkpoint_step`), else the epoch, else the runs' order."""

from __future__ import annotations

from typing import Any

from .columns import RunColumn, step_epoch
from .plots import line_plot
from .tables import table
from .text import clip, fmt_num, fmt_value, number


def trend(runs: list[RunColumn], base: RunColumn | None, tasks: list[str]) -> dict[str, Any] | None:
    """Primary metric vs checkpoint step (or epoch, or position); None for a single run. The baseline
    joins the lines when it has the same kind of x value; otherwise it is drawn as a dashed reference
    line per metric."""
    if len(runs) < 2:
        return None
    steps = [step_epoch(c.res) for c in runs]
    bstep = step_epoch(base.res) if base is not None else (None, None)
    if all(s is not None for s, _ in steps):
        xs, xlabel, ticks, bx = [s for s, _ in steps], "checkpoint step", False, bstep[0]
    elif all(e is not None for _, e in steps):
        xs, xlabel, ticks, bx = [e for _, e in steps], "checkpoint epoch", False, bstep[1]
    else:
        xs, xlabel, ticks, bx = [float(i + 1) for i in range(len(runs))], "run (position)", True, None
    pts = list(zip(xs, runs))
    if base is not None and bx is not None:
        pts.append((bx, base))
    pts.sort(key=lambda p: (p[0], 0 if p[1].is_baseline else 1))
    xs_o = [x for x, _ in pts if x is not None]  # every x is set (the branches above)
    cols_o = [c for _, c in pts]
    base_line = base is not None and bx is None
    lines, rows = [], []
    for task in tasks[:12]:
        trs = [c.res.tasks.get(task) for c in cols_o]
        ref = next((t for t in trs if t is not None), None)
        if ref is None:
            continue
        m = ref.primary_metric
        unit = (ref.metric_info.get(m) or {}).get("unit", "") or ""
        ys = [number(t.metrics.get(m)) if t is not None else None for t in trs]
        bval = None
        if base_line and task in base.res.tasks:  # type: ignore[union-attr]
            bval = number(base.res.tasks[task].metrics.get(m))  # type: ignore[union-attr]
        lines.append((f"{task}/{m}", ys, bval))
        rows.append(
            [clip(f"{task}/{m}", 80)]
            + ([fmt_value(bval, unit)] if base_line else [])
            + [fmt_value(y, unit) for y in ys]
        )
    if not lines:
        return None
    head = (
        ["metric"]
        + (["baseline"] if base_line else [])
        + [
            ("baseline: " if c.is_baseline else "")
            + (c.label if ticks else f"{c.label} ({xlabel.split()[-1]} {fmt_num(x)})")
            for c, x in zip(cols_o, xs_o)
        ]
    )
    try:
        b64 = line_plot(xs_o, [c.label for c in cols_o] if ticks else None, lines, xlabel)
        err = ""
    except Exception as e:  # noqa: BLE001 - a plot must not break the report
        b64, err = None, clip(str(e), 200)
    return {
        "b64": b64,
        "error": err,
        "xlabel": xlabel,
        "table": table("values", head, rows),
        "base_line": base_line,
        "base_point": base is not None and not base_line,
    }
