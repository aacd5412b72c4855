"""The append-only per-sample log of one task in one run folder, with its fingerprint header.

Records stream to the file as soon as their chunk finishes (flushed and fsynced). Re-running the same
command skips finished samples; a file whose header carries another fingerprint (model, checkpoint,
template, generation, few-shot, task options or data changed) is moved aside (``.stale-<time>``)
instead of mixing results. A line cut short by a kill (any last line without its newline) is dropped
on resume; a log with no complete header line (zero bytes, or a header cut short by a kill) is treated
as empty and started again with a header, never appended to headerless.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import atomic_writer
from .records import SAMPLES_SCHEMA, samples_header

log = logging.getLogger("mmgpt_eval")


def move_aside(path: Path) -> Path:
    """Rename a per-sample log to ``<name>.stale-<time>`` beside it (kept, never read again); the new path."""
    stale = path.with_name(f"{path.name}.stale-{int(time.time())}")
    os.replace(path, stale)
    return stale


class SampleStore:
    def __init__(self, path: Path, task: str, fp: str):
        self.path = path
        self.task = task
        self.fp = fp

    def load_done(self, readonly: bool = False) -> dict[str, dict[str, Any]]:
        """Finished records by id. ``readonly``: never move a stale file or truncate (other ranks)."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        done: dict[str, dict[str, Any]] = {}
        good_bytes = 0
        header_ok = seen_first = False
        for i, line in enumerate(lines):
            if i == len(lines) - 1 and line:  # no newline after it: the write was cut short by a kill
                log.warning("%s: dropping an incomplete last line (interrupted run)", self.path)
                break
            if not line.strip():
                good_bytes += len(line) + (1 if i < len(lines) - 1 else 0)
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                if i >= len(lines) - 2:  # the line being written when the process died
                    log.warning("%s: dropping an incomplete last line (interrupted run)", self.path)
                    break
                raise UserError(
                    f"corrupt line {i + 1} in the per-sample log; delete the file to start over", self.path
                ) from None
            if not seen_first:  # the header: the first non-blank line
                seen_first = True
                header = obj.get(SAMPLES_SCHEMA) if isinstance(obj, dict) else None
                if not header or header.get("fingerprint") != self.fp:
                    if readonly:
                        return {}
                    stale = move_aside(self.path)
                    log.warning(
                        "%s: the model, checkpoint, template, generation or data settings changed; "
                        "earlier results moved to %s and the task starts over",
                        self.path,
                        stale.name,
                    )
                    return {}
                header_ok = True
            elif header_ok:
                done[str(obj["id"])] = obj
            good_bytes += len(line) + 1
        if not header_ok:  # nothing but blank or cut-short bytes: no header was ever completed
            if good_bytes or raw:
                log.warning(
                    "%s: the per-sample log has no complete header (interrupted run); starting it over", self.path
                )
            good_bytes = 0
        if good_bytes < len(raw) and not readonly:
            with self.path.open("r+b") as f:
                f.truncate(good_bytes)
        return done

    def start(self) -> None:
        """Create the file with its header (if it does not exist or is empty)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as f:
                f.write(json.dumps(samples_header(self.task, self.fp)) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def append(self, records: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Atomically replace the file (header + records), e.g. after per-sample metrics were filled in."""
        with atomic_writer(self.path) as f:
            f.write(json.dumps(samples_header(self.task, self.fp)) + "\n")
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
