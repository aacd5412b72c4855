"""One pass over a per-sample log: its header, and compact columns of ids and per-sample metric values.

Every command that reads a run folder (compare, gate, report, export, trackers) checks a task's log
(:meth:`RunResults.check_samples`) and needs its ids and per-sample metric values; both come from one
read of the file, kept as plain lists (a string per id, a float or None per value) instead of a typed
record per line. Whole records are read again only where something shows them (report galleries and
transcripts, the export table), through :meth:`TaskLog.records`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import UserError
from .io import iter_jsonl
from .records import SAMPLES_SCHEMA, SampleRecord, is_header


@dataclass
class TaskLog:
    """The columns of one per-sample log. ``ids[i]`` and ``values[key][i]`` belong to the i-th record
    (file order, header excluded); a value is a float, or None where the record has none for that key."""

    path: Path
    header: dict[str, Any] | None
    ids: list[str] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def metric(self, key: str, first: int | None = None) -> tuple[list[str], list[float]]:
        """``(ids, values)`` of the records that have a value for ``key`` (of the first ``first`` records)."""
        col = self.values[key]
        end = len(col) if first is None else min(first, len(col))
        ids, vals = [], []
        for i in range(end):
            v = col[i]
            if v is not None:
                ids.append(self.ids[i])
                vals.append(v)
        return ids, vals

    def records(self) -> list[SampleRecord]:
        """The whole records, typed (a second read of the file: only for what is shown record by record)."""
        return [
            SampleRecord.from_dict(obj, (self.path, line)) for line, obj in iter_jsonl(self.path) if not is_header(obj)
        ]


def read_log(path: str | os.PathLike, keys: Iterable[str] = ()) -> TaskLog:
    """Read a per-sample log once: its header (the first line, when it is one), every record's id, and
    the per-sample values of ``keys``. A record that is not an object with an id, whose ``metrics`` is not
    an object, or a value that is not a number (or null) is a one-line UserError naming the line; so is
    a second header."""
    path = Path(path)
    keys = list(dict.fromkeys(keys))
    log = TaskLog(path, None, [], {k: [] for k in keys})
    ids, cols = log.ids, [log.values[k] for k in keys]
    first = True
    for line, obj in iter_jsonl(path):
        if first:
            first = False
            if is_header(obj):
                h = obj[SAMPLES_SCHEMA]
                log.header = h if isinstance(h, dict) else None
                continue
        elif is_header(obj):
            raise UserError("a second header line in the per-sample log", path, line)
        if not isinstance(obj, dict) or "id" not in obj:
            raise UserError("a per-sample record must be a JSON object with an id", path, line)
        m = obj.get("metrics", {})
        if not isinstance(m, dict):
            raise UserError(f"record {obj['id']}: metrics must be an object", path, line)
        ids.append(str(obj["id"]))
        for k, col in zip(keys, cols):
            v = m.get(k)
            if v is None:
                col.append(None)
            elif isinstance(v, (int, float)):
                col.append(float(v))
            else:
                raise UserError(f"record {obj['id']}: per-sample value {k!r} is {v!r}, not a number", path, line)
    return log
