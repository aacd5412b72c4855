"""Per-task breakdowns: first what the task's own hook makes of the runs' ``TaskResult.breakdown``
(:meth:`~mmgpt_eval.taskapi.reporting.ReportHooks.report_tables`: tables and bar plots), then every key
it did not consume, generically: a dict of scalars as a table (one row per key, one column per run),
scalars in one key/value table. Nested data no one consumed is not shown."""

from __future__ import annotations

from typing import Any

from ..taskapi.reporting import Column, ReportHooks, dict_table
from .columns import RunColumn
from .hooks import report_tables
from .limits import MAX_TABLES_PER_TASK
from .plots import bar_plot
from .tables import from_hook, table
from .text import cell, clip, to_text


def breakdowns(cols: list[RunColumn], tasks: list[str], hooks: dict[str, ReportHooks | None]) -> list[dict[str, Any]]:
    out = []
    for ti, task in enumerate(tasks):
        tcols = [c for c in cols if task in c.res.tasks]
        trs = [c.res.tasks[task] for c in tcols]
        bds = [tr.breakdown if isinstance(tr.breakdown, dict) else {} for tr in trs]
        columns = [Column(c.label, b, c.is_baseline) for c, b in zip(tcols, bds)]
        notes: list[str] = []
        view, err = report_tables(hooks.get(task), columns)
        if err:
            notes.append(err)
        tables = [t for t in (from_hook(t) for t in view.tables) if t is not None]
        plots = [p for p in (bar_plot(p) for p in view.plots[:MAX_TABLES_PER_TASK]) if p is not None]
        done = set(view.consumed)
        # anything else: dicts of scalars as tables, scalars in one key/value table
        scalars: list[str] = []
        for b in bds:
            for k, v in b.items():
                if k in done:
                    continue
                if isinstance(v, dict) and v and all(not isinstance(x, (dict, list)) for x in v.values()):
                    done.add(k)
                    tab = from_hook(dict_table(str(k), columns, [bb.get(k) for bb in bds]))
                    if tab is not None:  # always: dict_table gives a Table
                        tables.append(tab)
                elif not isinstance(v, (dict, list)) and k not in scalars:
                    scalars.append(k)
        if scalars:
            tables.append(
                table(
                    "other breakdown values",
                    ["key"] + [c.label for c in tcols],
                    [[clip(k, 80)] + [cell(b.get(k)) if k in b else "—" for b in bds] for k in scalars],
                )
            )
        for c in tcols:
            tnotes = c.res.tasks[task].notes
            for n in (tnotes if isinstance(tnotes, list) else [tnotes])[:10]:
                s = clip(to_text(n), 400)
                if s not in notes:
                    notes.append(s)
        out.append(
            {"task": task, "anchor": f"t{ti}", "tables": tables[:MAX_TABLES_PER_TASK], "plots": plots, "notes": notes}
        )
    return out
