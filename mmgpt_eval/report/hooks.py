"""The task side of the report: each task's class, found by name (or alias) with
``taskregistry.discover()`` (looked up once per process), and safe calls of the report view it declares
(``Task.view``, ``mmgpt_eval.taskapi.reporting``). A task whose plugin is not installed, or whose hook raises or
returns something else than promised, gets the generic view: no exception from a plugin reaches the
page build."""

from __future__ import annotations

import logging
from typing import Any

from ..records import SampleRecord
from ..taskapi.reporting import Column, ExtraOutput, Flag, ReportHooks, ReportTables, Transcript, Turn, clip, to_text

log = logging.getLogger("mmgpt_eval")
_CLASSES: dict[str, type] | None = None


def task_classes() -> dict[str, type]:
    """Task classes by name and alias (``{}`` when discovery fails, e.g. a broken plugin; not cached then)."""
    global _CLASSES
    if _CLASSES is None:
        try:
            from ..taskregistry import alias_map, discover

            classes = discover()
            _CLASSES = {alias: classes[name] for alias, name in alias_map(classes).items()}
        except Exception as e:  # noqa: BLE001 - the report still renders every task generically
            log.warning("report: task plugins could not be listed (%s); task-specific views are left out", e)
            return {}
    return _CLASSES


def hooks_for(task: str, options: Any = None) -> ReportHooks | None:
    """The report view ``task`` declares (``Task.view``), None when the task is unknown or declares
    something else. ``options`` (the run's task options) are not needed: views see results only."""
    view = getattr(task_classes().get(task), "view", None)
    return view if isinstance(view, ReportHooks) else None


def report_tables(hooks: ReportHooks | None, columns: list[Column]) -> tuple[ReportTables, str]:
    """The task's tables, plots and consumed keys, and an error message ("" when fine)."""
    if hooks is None:
        return ReportTables(), ""
    try:
        view = hooks.report_tables(columns)
    except Exception as e:  # noqa: BLE001 - malformed data or a plugin bug: show the breakdown generically
        return ReportTables(), (
            f"task-specific tables failed ({type(e).__name__}: {clip(str(e), 300)}); shown generically"
        )
    if view is None:
        return ReportTables(), ""
    if not isinstance(view, ReportTables):
        return ReportTables(), f"task-specific tables: report_tables returned {type(view).__name__}, not ReportTables"
    raw = view.consumed
    consumed = {k for k in raw if isinstance(k, str)} if isinstance(raw, (set, frozenset, list, tuple)) else set()
    return ReportTables(_list(view.tables), _list(view.plots), consumed), ""


def _list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def _text(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else to_text(v))


def transcript(hooks: ReportHooks | None, record: SampleRecord | None) -> Transcript | None:
    """The record's transcript with every field checked (a wrong entry is dropped), or None."""
    if hooks is None or record is None:
        return None
    try:
        t = hooks.transcript(record)
    except Exception:  # noqa: BLE001 - a malformed record: no transcript for it
        return None
    if not isinstance(t, Transcript) or not isinstance(t.turns, (list, tuple)):
        return None
    turns = []
    for turn in t.turns:
        if not isinstance(turn, Turn) or not isinstance(turn.output_key, str):
            continue
        flags = [
            Flag(_text(f.name), f.level if f.level in ("good", "bad", "warn", "info") else "info")
            for f in (turn.flags if isinstance(turn.flags, (list, tuple)) else [])
            if isinstance(f, Flag)
        ]
        turns.append(
            Turn(
                turn.output_key,
                _text(turn.instruction),
                _text(turn.kind),
                None if turn.reference is None else _text(turn.reference),
                flags,
            )
        )
    extras = [
        ExtraOutput(_text(x.name), x.output_key, _text(x.section))
        for x in (t.extras if isinstance(t.extras, (list, tuple)) else [])
        if isinstance(x, ExtraOutput) and isinstance(x.output_key, str)
    ]
    return Transcript(turns, extras)
