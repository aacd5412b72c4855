"""The runs of a report as columns: a label per run (what was evaluated, made unique), the per-sample
records read once as :class:`~mmgpt_eval.records.SampleRecord` for the page (the paired statistics read
the logs' id/value columns, :meth:`mmgpt_eval.results.RunResults.log`), and the checkpoint step / epoch a
run evaluated."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..compare import checkpoint_step, run_label
from ..errors import UserError
from ..records import SampleRecord
from ..results import RunResults
from .text import clip, number

LABEL_CHARS = 60


@dataclass
class RunColumn:
    """One run as a report column; per-sample records are read once and cached."""

    label: str
    res: RunResults
    is_baseline: bool = False
    _raw: dict[str, tuple[str, Any]] = field(default_factory=dict, repr=False)
    _typed: dict[str, tuple[dict[str, SampleRecord], int]] = field(default_factory=dict, repr=False)

    def records(self, task: str) -> list[dict[str, Any]]:
        """Per-sample records as stored (raises UserError when the samples file is missing or malformed)."""
        if task not in self._raw:
            try:
                self._raw[task] = ("ok", self.res.samples(task))
            except UserError as e:
                self._raw[task] = ("err", str(e))
        status, val = self._raw[task]
        if status == "err":
            raise UserError(val)
        return val

    def by_id(self, task: str) -> dict[str, SampleRecord]:
        """Records by sample id, typed; records that are not valid (no id, metrics not an object) are
        left out and counted (:meth:`skipped`). Raises UserError like :meth:`records`."""
        if task not in self._typed:
            if task in self._raw:
                raw = self.records(task)
            else:  # read for this table only: the dicts are not kept beside the typed records
                try:
                    raw = self.res.samples(task)
                except UserError as e:
                    self._raw[task] = ("err", str(e))
                    raise
            out: dict[str, SampleRecord] = {}
            bad = 0
            for i, r in enumerate(raw):
                try:
                    rec = SampleRecord.from_dict(r, f"record {i + 1}")
                except (UserError, TypeError, ValueError):
                    bad += 1
                    continue
                out[rec.id] = rec
            self._typed[task] = (out, bad)
        return self._typed[task][0]

    def skipped(self, task: str) -> int:
        """Records of ``task`` left out by :meth:`by_id` as malformed."""
        return self._typed[task][1] if task in self._typed else 0

    def cached_results(self) -> RunResults:
        """A shallow copy of the run whose ``samples`` uses this column's cache (for compare_runs)."""
        c = copy.copy(self.res)
        c.samples = self.records  # type: ignore[method-assign]
        return c


def default_label(r: RunResults, i: int) -> str:
    """What the run evaluated (:func:`mmgpt_eval.compare.run_label`), else ``run N``."""
    try:
        label = run_label(r)
    except Exception:  # noqa: BLE001 - a malformed results file still gets a column
        label = ""
    return label if isinstance(label, str) and label.strip() else f"run {i + 1}"


def labels(runs: Sequence[RunResults], baseline: RunResults | None, given: list[str] | None) -> tuple[list[str], str]:
    """(run labels, baseline label): ``given`` labels win; duplicates get ``#2``, ``#3``... (the
    baseline keeps its name)."""
    if given is not None:
        given = [str(x) for x in given]
        if len(given) != len(runs):
            raise UserError(f"{len(given)} labels given for {len(runs)} runs; give one label per run")
        if any(not x.strip() for x in given):
            raise UserError("labels must not be empty")
    names = given or [default_label(r, i) for i, r in enumerate(runs)]
    bname = clip(default_label(baseline, len(runs)), LABEL_CHARS) if baseline is not None else ""
    seen: dict[str, int] = {bname: 1} if baseline is not None else {}
    out = []
    for n in names:
        n = clip(n, LABEL_CHARS)
        if n in seen:
            seen[n] += 1
            n = f"{n} #{seen[n]}"
        seen[n] = 1
        out.append(n)
    return out, bname


def step_epoch(r: RunResults) -> tuple[float | None, float | None]:
    """(step, epoch) of the checkpoint a run evaluated. The step is
    :func:`mmgpt_eval.compare.checkpoint_step` (the metadata's step or global step, the trainer's
    ``mmgpt_eval.json`` included) unless all it found was the epoch."""
    model = r.model if isinstance(r.model, dict) else {}
    ck: Any = model.get("checkpoint") if isinstance(model.get("checkpoint"), dict) else {}
    meta = ck.get("metadata")

    def find(k: str) -> float | None:
        for d in (meta, meta.get("mmgpt_eval") if isinstance(meta, dict) else None):
            v = d.get(k) if isinstance(d, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):  # what checkpoint_step accepts
                return number(v)
        return None

    epoch = find("epoch")
    has_step = find("step") is not None or find("global_step") is not None
    try:
        step = checkpoint_step(r) if has_step else None
    except Exception:  # noqa: BLE001
        step = None
    return number(step), epoch
