"""Published OpenFlamingo numbers (:mod:`mmgpt_eval.published`) beside the runs' values: the rows that
compare (same task, model preset, shots and protocol), each with its source and caveats, and the rows
for the same tasks that do not, each with the reasons. Driven by the published file's rows: no task is
named here."""

from __future__ import annotations

import os
from typing import Any

from ..errors import UserError
from ..published import Published, load, load_default, notes_for, published_rows_for
from .columns import RunColumn
from .limits import LIMITS
from .text import clip, fmt_delta, fmt_num

MAX_ROWS = 200


def _published(source: Published | str | os.PathLike | None) -> Published | None:
    if isinstance(source, Published):
        return source
    return load(source) if source is not None else load_default()


def _num(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "—"
    return fmt_num(v) + (f" ± {fmt_num(std)}" if std is not None else "")


def _error(msg: str) -> dict[str, Any]:
    return {"error": clip(msg, 600), "compare": [], "other": [], "omitted": 0, "notes": [], "path": ""}


def published_view(cols: list[RunColumn], source: Published | str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The section's rows, or None when no published row concerns the runs' tasks (or there is no file)."""
    try:
        pub = _published(source)
    except UserError as e:
        return _error(str(e))
    if pub is None:
        return None
    compare, other, notes = [], [], []
    for c in cols:
        try:
            matches = published_rows_for(c.res, published=pub)
            run_notes = notes_for(c.res, pub)
        except (UserError, KeyError, TypeError, ValueError) as e:  # a hand-made results file
            return _error(f"{c.label}: {e}")
        for m in matches:
            base = {
                "label": c.label,
                "task": m.task,
                "id": m.row.id,
                "model": clip(m.row.model, LIMITS["cell"]),
                "shots": str(m.shots),
                "source": clip(m.row.source, LIMITS["cell"]),
                "commit": m.row.source_commit[:12],
                "verified": "yes" if m.row.verified else "no",
            }
            if m.compares:
                compare.append(
                    {
                        **base,
                        "metric": m.row.metric + (f" (×{m.row.factor:g})" if m.row.factor != 1 else ""),
                        "measured": _num(m.measured),
                        "published": _num(m.published, m.published_std),
                        "delta": fmt_delta(m.delta),
                        "split": clip(m.row.split, LIMITS["cell"]),
                        "caveats": [clip(x, 600) for x in m.caveats],
                    }
                )
            else:
                other.append(
                    {
                        **base,
                        "values": clip(m.row.values_text(), LIMITS["cell"]),
                        "reasons": [clip(x, 600) for x in m.reasons],
                    }
                )
        notes += [n for n in run_notes if n not in notes]
    if not compare and not other:
        return None
    return {
        "error": "",
        "compare": compare[:MAX_ROWS],
        "other": other[:MAX_ROWS],
        "omitted": max(0, len(compare) - MAX_ROWS) + max(0, len(other) - MAX_ROWS),
        "notes": [clip(n, 2000) for n in notes],
        "path": str(pub.path or ""),
    }
