"""Task-specific views in the HTML report: what a task hands the report, and helpers to build it.

The report (``mmgpt_eval.report``) renders every task the same way -- summary, generic breakdown
tables, galleries -- and asks the task's view for what only the task understands. A task declares its
view as a class attribute, ``view = ...``: an instance of :class:`ReportHooks` (the default: no
task-specific view), of :class:`BreakdownTables` (tables of breakdown dicts, declared), or of a
subclass kept in a companion module beside the task (``tasks/dialog_view.py``). The report finds the
task's class by name with ``taskregistry.discover()`` and calls the view's two hooks:

``report_tables(columns) -> ReportTables``
    ``columns``: the runs shown, in page order (baseline first), each a :class:`Column` with the
    run's label and its ``TaskResult.breakdown`` (always a dict; ``{}`` when the run's is malformed).
    Return the :class:`Table` s and :class:`BarPlot` s to show and, in ``consumed``, the breakdown keys
    they cover; the report shows every other key generically (dicts of scalars as tables, scalars in
    one key/value table).

``transcript(record) -> Transcript | None``
    ``record``: one per-sample record as a :class:`mmgpt_eval.records.SampleRecord` (always a
    SampleRecord; its fields are whatever the samples file held, so check their types). Return the
    conversation's turns -- instruction, kind, reference, the request key of the answer in
    ``record.outputs``, and flags -- plus any extra outputs to show below them, or None when the
    record has no transcript (the default: the task has none). The report calls it once per run and
    conversation and shows the runs side by side; galleries show the turns' answers too.

Views see results only, never the task's options or data.

Contract: hooks get data read from files written by any version of any run, possibly hand-edited
or hostile. They must not raise on a missing key, a wrong type, a NaN or a huge dict (the helpers
below never do); the report still catches what they raise and falls back to the generic view. Values
are returned as text: the report escapes, clips (with a visible marker) and caps rows itself, and it
draws the plots (matplotlib) -- so a task module never imports matplotlib, torch or the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from ..records import SampleRecord
from ..numbers import number

__all__ = [
    "SampleRecord",
    "Column",
    "Table",
    "BarPlot",
    "ReportTables",
    "Flag",
    "Turn",
    "ExtraOutput",
    "Transcript",
    "ReportHooks",
    "BreakdownTable",
    "BreakdownTables",
    "FLAG_LEVELS",
    "CELL_LIMIT",
    "number",
    "to_text",
    "clip",
    "fmt_num",
    "fmt_value",
    "fmt_cell",
    "keys_of",
    "numeric_order",
    "dict_table",
]

CELL_LIMIT = 200  # characters of one table cell (the report clips every cell to this too)
SHORT_LIMIT = 160  # characters of a non-numeric value printed where a number was expected
FLAG_LEVELS = ("good", "bad", "warn", "info")


# ------------------------------------------------------------------------------------------ what hooks return
@dataclass
class Column:
    """One run as :meth:`ReportHooks.report_tables` sees it."""

    label: str
    breakdown: dict[str, Any]  # the run's TaskResult.breakdown ({} when it is not a dict)
    baseline: bool = False


@dataclass
class Table:
    """A table of already formatted strings; ``collapsed``: shown folded (a <details> element)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    collapsed: bool = False


@dataclass
class BarPlot:
    """A grouped bar plot as data: one bar per series (usually a run) and category; None: no bar."""

    title: str
    categories: list[str]
    series: list[tuple[str, list[Optional[float]]]]  # (label, one value per category)
    xlabel: str = ""
    ylabel: str = ""
    ylim: Optional[tuple[float, float]] = None


@dataclass
class ReportTables:
    """What :meth:`ReportHooks.report_tables` returns."""

    tables: list[Table] = field(default_factory=list)
    plots: list[BarPlot] = field(default_factory=list)
    consumed: set[str] = field(default_factory=set)  # breakdown keys shown above (not repeated generically)


@dataclass
class Flag:
    """A per-turn marker: ``good`` (check passed), ``bad`` (check failed), ``warn`` (a problem such
    as a truncated answer) or ``info`` (plain information, e.g. the length)."""

    name: str
    level: str = "info"  # one of FLAG_LEVELS


@dataclass
class Turn:
    """One turn of a transcript: the answer is ``record.outputs[output_key]["prediction"]``."""

    output_key: str
    instruction: str = ""
    kind: str = ""
    reference: Optional[str] = None  # None: the turn has no reference answer
    flags: list[Flag] = field(default_factory=list)


@dataclass
class ExtraOutput:
    """Another output of the same conversation shown below its turns, e.g. ``ExtraOutput("same
    question, blank image", "blank", section="grounding probe")``."""

    name: str
    output_key: str
    section: str = ""  # the row's heading


@dataclass
class Transcript:
    turns: list[Turn]
    extras: list[ExtraOutput] = field(default_factory=list)


class ReportHooks:
    """A task's report view: the hooks the report calls (see the module docstring); the defaults add
    nothing."""

    def report_tables(self, columns: list[Column]) -> ReportTables:
        """Task-specific tables and plots of the runs' breakdowns, and the breakdown keys they consumed."""
        return ReportTables()

    def transcript(self, record: SampleRecord) -> Optional[Transcript]:
        """The turns of one per-sample record side by side with other runs', or None (no transcript)."""
        return None


# ------------------------------------------------------------------------------------------ formatting
def to_text(v: Any) -> str:
    """A string as is; anything else as compact JSON (or ``str`` when it is not JSON-able)."""
    if isinstance(v, str):
        return v
    try:
        return json.dumps(v, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(v)


def clip(text: Any, limit: int, *, tail: bool = False) -> str:
    """Truncate to about ``limit`` characters with a visible marker; ``tail`` keeps the end."""
    s = text if isinstance(text, str) else ("" if text is None else to_text(text))
    if len(s) <= limit:
        return s
    cut = len(s) - limit
    if tail:
        return f"[… {cut} earlier characters omitted …]" + s[-limit:]
    head = limit * 2 // 3
    return s[:head] + f" [… {cut} characters omitted …] " + s[-(limit - head) :]


def fmt_num(v: float, sig: int = 4) -> str:
    """``sig`` significant digits, no trailing zeros (``12.5``, ``0.1235``, ``12346``)."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10**sig:
        return f"{v:.0f}"
    digits = max(0, sig - 1 - int(math.floor(math.log10(a))))
    s = f"{v:.{min(digits, 6)}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def fmt_value(v: Any, unit: str = "") -> str:
    """A metric value with its unit (``12.5%``, ``37 words``); ``—`` for None; other values as text."""
    f = number(v)
    if f is None:
        return "—" if v is None else clip(to_text(v), SHORT_LIMIT)
    return f"{fmt_num(f)}{unit if isinstance(unit, str) else ''}"


def fmt_cell(v: Any, limit: int = CELL_LIMIT) -> str:
    """Any value as a table cell: ``—``, yes/no, a number, or clipped text."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return fmt_num(v) if number(v) is not None else str(v)
    return clip(to_text(v), limit)


def numeric_order(key: Any) -> tuple[bool, float, str]:
    """Sort key: numbers and numeric keys ("2", "10": dict keys are text) numerically first, then the rest
    by text."""
    f = number(key)
    if f is None and isinstance(key, str):
        try:
            f = number(float(key))
        except (ValueError, OverflowError):
            f = None
    return (f is None, f or 0.0, str(key))


def keys_of(dicts: Iterable[Any], *, numeric: bool = False) -> list[str]:
    """The keys of the dicts among ``dicts`` (others are skipped), in first-seen order or numerically."""
    keys: list[Any] = []
    seen: set[Any] = set()
    for d in dicts:
        if isinstance(d, dict):
            for k in d:
                if k not in seen:
                    seen.add(k)
                    keys.append(k)
    if numeric:
        keys.sort(key=numeric_order)
    return keys


def dict_table(
    title: str,
    columns: list[Column],
    dicts: list[Any],
    *,
    counts: Optional[list[Any]] = None,
    unit: str = "",
    sort_numeric: bool = False,
    collapsed: bool = False,
) -> Table:
    """One row per key of the per-run ``dicts`` (one per column; anything not a dict shows ``—``), one
    value column per run; ``counts`` (per-run dicts of sample counts) adds an ``n`` column from the
    first run's."""
    keys = keys_of(dicts, numeric=sort_numeric)
    header = (
        ["group"] + ([f"n ({columns[0].label})"] if counts is not None and columns else []) + [c.label for c in columns]
    )
    n0 = counts[0] if counts else None
    rows = []
    for k in keys:
        row = [clip(str(k), CELL_LIMIT)]
        if counts is not None and columns:
            row.append(fmt_cell(n0.get(k)) if isinstance(n0, dict) else "—")
        row += [fmt_value(d.get(k), unit) if isinstance(d, dict) and k in d else "—" for d in dicts]
        rows.append(row)
    return Table(title, header, rows, collapsed)


# ------------------------------------------------------------------------------------------ declared views
@dataclass(frozen=True)
class BreakdownTable:
    """One breakdown dict shown as a table: ``key`` (group -> value per run), its ``title``, and
    optionally ``counts``, the key of the group -> sample count dict shown as an ``n`` column."""

    key: str
    title: str
    counts: Optional[str] = None
    unit: str = ""


class BreakdownTables(ReportHooks):
    """A view of declared breakdown tables: each one whose key some run has, in declaration order;
    its key and counts key are consumed."""

    def __init__(self, *tables: BreakdownTable):
        self.tables = tables

    def report_tables(self, columns: list[Column]) -> ReportTables:
        out = ReportTables()
        for t in self.tables:
            if any(t.key in c.breakdown for c in columns):
                counts = None if t.counts is None else [c.breakdown.get(t.counts) for c in columns]
                out.tables.append(
                    dict_table(t.title, columns, [c.breakdown.get(t.key) for c in columns], counts=counts, unit=t.unit)
                )
                out.consumed |= {t.key} if t.counts is None else {t.key, t.counts}
        return out
