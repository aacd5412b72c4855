"""One pass over a per-sample log: its header, and compact columns of ids and per-sample metric values.

Every command that reads a run folder (compare, gate, report, export, trackers) checks a task's log
(:meth:`RunResults.check_samples`) and needs its ids and per-sample metric values; both come from one
read of the file, kept as plain lists (a string per id, a float or None per value) instead of a typed
record per line, with each record's position in the file. A reader that needs more of every record
(the export table, the report's changed-prediction count) passes ``visit``, called with each record
during that same pass; a record shown whole (a report's gallery card or transcript) is read back alone
from its position (:meth:`TaskLog.record`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import UserError
from .io import MAX_BYTES, MAX_DEPTH, depth_exceeds, iter_jsonl, line_too_long, loads_json, too_deep
from .records import SAMPLES_SCHEMA, SampleRecord, is_header


@dataclass
class TaskLog:
    """The columns of one per-sample log. ``ids[i]`` and ``values[key][i]`` belong to the i-th record
    (file order, header excluded); a value is a float, or None where the record has none for that key."""

    path: Path
    header: dict[str, Any] | None
    ids: list[str] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)
    #: where each record starts: its byte offset, or minus its line number when its line of the file
    #: also holds another record (a carriage return that ends lines inside it)
    offsets: list[int] = field(default_factory=list, repr=False)
    #: what a reader gathered from the records during the same read (its ``visit``), by the reader's name
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

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

    def record(self, i: int) -> dict[str, Any]:
        """The i-th record as stored (a JSON object), read back alone from its position in the file."""
        at = self.offsets[i]
        if at < 0:  # its line also holds another record: find it by line number
            return next(obj for line, obj in iter_jsonl(self.path) if line == -at)
        with self.path.open("rb") as f:
            f.seek(at)
            return loads_json(f.readline(MAX_BYTES["jsonl-line"] + 1).decode("utf-8"), self.path)


def _lines(path: Path) -> Iterator[tuple[int, int, str]]:
    """``(line number, byte offset or minus the line number, text)`` of each non-blank line, numbered and
    split like :func:`mmgpt_eval.io.iter_jsonl` reads them (universal newlines). A line longer than
    :data:`mmgpt_eval.io.MAX_BYTES` ``["jsonl-line"]`` is a one-line UserError."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except IsADirectoryError:
        raise UserError("is a directory, expected a JSONL file", path) from None
    except PermissionError:
        raise UserError("permission denied", path) from None
    cap = MAX_BYTES["jsonl-line"]
    with f:
        # a file no longer than the cap has no line over it: read at full speed; else line by line, bounded
        lines: Iterable[bytes] = f if os.fstat(f.fileno()).st_size <= cap else iter(lambda: f.readline(cap + 1), b"")
        lineno, at = 0, 0
        for raw in lines:
            if len(raw) > cap:
                raise line_too_long(path, lineno + 1)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"not UTF-8 text ({e.reason}); save it as UTF-8", path) from None
            start, at = at, at + len(raw)
            if "\r" in text:  # text mode ends a line at \r\n, \r or \n
                parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
                if parts and parts[-1] == "":
                    parts.pop()
                for part in parts:
                    lineno += 1
                    if part.strip():
                        yield lineno, -lineno, part
                continue
            lineno += 1
            if text.strip():
                yield lineno, start, text


def _short(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def read_log(
    path: str | os.PathLike, keys: Iterable[str] = (), visit: Callable[[dict[str, Any]], Any] | None = None
) -> TaskLog:
    """Read a per-sample log once: its header (the first line, when it is one), every record's id and
    position, and the per-sample values of ``keys``; ``visit(record)`` is called with each record (the
    parsed JSON object) in file order. A record that is not an object with an id (a string or an
    integer), whose ``metrics`` is not an object, or a value that is not a number (or null) is a one-line
    UserError naming the line; so are a second header and a line beyond the bounds of
    :mod:`mmgpt_eval.io` (size, nesting depth)."""
    path = Path(path)
    keys = list(dict.fromkeys(keys))
    log = TaskLog(path, None, [], {k: [] for k in keys})
    ids, offsets, cols = log.ids, log.offsets, [log.values[k] for k in keys]
    first = True
    loads = json.loads
    for line, at, text in _lines(path):
        try:
            obj = loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"malformed JSON line (column {e.colno}: {e.msg})", path, line) from None
        except RecursionError:
            raise too_deep(path, line) from None
        if text.count("[") + text.count("{") > MAX_DEPTH and depth_exceeds(obj):
            raise too_deep(path, line)
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
        rid = obj["id"]
        if not (type(rid) is str or type(rid) is int):  # is_id, inlined: called for every record
            raise UserError(f"a record's id must be a string or an integer, got {_short(rid)}", path, line)
        m = obj.get("metrics", {})
        if not isinstance(m, dict):
            raise UserError(f"record {rid}: metrics must be an object", path, line)
        ids.append(str(rid))
        offsets.append(at)
        for k, col in zip(keys, cols):
            v = m.get(k)
            if v is None:
                col.append(None)
            elif isinstance(v, (int, float)):
                col.append(float(v))
            else:
                raise UserError(f"record {obj['id']}: per-sample value {k!r} is {v!r}, not a number", path, line)
        if visit is not None:
            visit(obj)
    return log
