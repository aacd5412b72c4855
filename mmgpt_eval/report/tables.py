"""Tables as the template renders them (``{"title", "head", "rows", "omitted", "collapsed"}``): every
cell clipped, rows capped at ``MAX_TABLE_ROWS`` (the rest counted). Tables from task hooks are
checked here too, since a plugin may hand back anything."""

from __future__ import annotations

from typing import Any

from ..taskapi.reporting import Table
from .limits import LIMITS, MAX_TABLE_ROWS
from .text import clip, to_text

MAX_CELLS = 64  # cells per row of a task's table (a row has one per run plus a few)


def table(title: str, head: list[str], rows: list[list[str]], *, collapsed: bool = False) -> dict[str, Any]:
    shown = rows[:MAX_TABLE_ROWS]
    return {"title": title, "head": head, "rows": shown, "omitted": len(rows) - len(shown), "collapsed": collapsed}


def _text(v: Any, limit: int) -> str:
    return clip(v if isinstance(v, str) else ("—" if v is None else to_text(v)), limit)


def from_hook(t: Any) -> dict[str, Any] | None:
    """A :class:`~mmgpt_eval.taskapi.reporting.Table` from a task hook as a page table; None when it
    is not one."""
    if not isinstance(t, Table):
        return None
    head = [_text(h, LIMITS["cell"]) for h in t.header[:MAX_CELLS]] if isinstance(t.header, (list, tuple)) else []
    src = [r for r in t.rows if isinstance(r, (list, tuple))] if isinstance(t.rows, (list, tuple)) else []
    rows = [[_text(c, LIMITS["cell"]) for c in r[:MAX_CELLS]] for r in src[:MAX_TABLE_ROWS]]
    return {
        "title": _text(t.title, LIMITS["cell"]),
        "head": head,
        "rows": rows,
        "omitted": len(src) - len(rows),
        "collapsed": bool(t.collapsed),
    }
