"""The runs of a report as columns: a label per run (what was evaluated, made unique), each task's
samples as the page needs them (:class:`TaskView`: ids, per-sample values and prediction texts from the
log's one read, :meth:`mmgpt_eval.results.RunResults.log`; a whole
:class:`~mmgpt_eval.records.SampleRecord` only for a sample the page shows), and the checkpoint step /
epoch a run evaluated."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..compare import checkpoint_step, run_label
from ..errors import UserError
from ..records import SampleRecord
from ..results import RunResults
from ..runfolder import TaskLog
from .samples import sample_value
from .text import clip, number, to_text


class TaskView:
    """One run's samples of one task, in log order, unique by id: ``ids``, and per id its per-sample
    value (:meth:`value`, as :func:`~mmgpt_eval.report.samples.sample_value` reads it), its prediction
    as text (:meth:`prediction_text`) and its whole record (:meth:`record`, read when asked).

    Made from the log's columns when the log reads cleanly with distinct ids (every record then is a
    valid :class:`SampleRecord`); otherwise from every record typed, the malformed ones left out and
    counted (:attr:`skipped`), the last of a repeated id kept."""

    def __init__(
        self,
        ids: list[str],
        *,
        log: TaskLog | None = None,
        predictions: list[str] | None = None,
        typed: dict[str, SampleRecord] | None = None,
        skipped: int = 0,
    ) -> None:
        self.ids = ids
        self.pos = {i: n for n, i in enumerate(ids)}
        self.skipped = skipped
        self._log, self._predictions, self._typed = log, predictions, typed
        self._records: dict[str, SampleRecord] = {}

    def __contains__(self, i: object) -> bool:
        return i in self.pos

    def __len__(self) -> int:
        return len(self.ids)

    def has_values(self, key: str) -> bool:
        """Whether :meth:`value` can answer for ``key`` without reading records."""
        return self._typed is not None or (self._log is not None and key in self._log.values)

    def value(self, i: str, key: str) -> float | None:
        if self._typed is not None:
            return sample_value(self._typed[i], key)
        assert self._log is not None
        col = self._log.values.get(key)
        if col is None:
            return sample_value(self.record(i), key)
        return number(col[self.pos[i]])

    def prediction_text(self, i: str) -> str:
        if self._typed is not None:
            return to_text(self._typed[i].prediction)
        assert self._predictions is not None
        return self._predictions[self.pos[i]]

    def record(self, i: str) -> SampleRecord:
        if self._typed is not None:
            return self._typed[i]
        if i not in self._records:
            assert self._log is not None
            n = self.pos[i]
            self._records[i] = SampleRecord.from_dict(self._log.record(n), f"record {n + 1}")
        return self._records[i]


PREDICTION_TEXTS = "report.prediction_texts"  # the name of what prediction_texts gathers in TaskLog.extra


def prediction_texts(out: list[str]) -> Callable[[dict[str, Any]], None]:
    """A ``visit`` for :meth:`~mmgpt_eval.results.RunResults.log` that appends each record's prediction as
    text to ``out`` (the report counts the samples whose prediction changed)."""

    def visit(rec: dict[str, Any]) -> None:
        out.append(to_text(rec.get("prediction", "")))

    return visit


def read_checked(path: Any) -> RunResults:
    """The run at ``path`` (folder or results.json), checked (:func:`mmgpt_eval.results.read_run`) in the
    one read of each log that also gathers what a report needs of every record (prediction texts)."""
    from ..results import read_run

    texts: dict[str, list[str]] = {}

    def visitors(res: RunResults) -> dict[str, Callable[[dict[str, Any]], None]]:
        texts.update({t: [] for t in res.tasks})
        return {t: prediction_texts(texts[t]) for t in res.tasks}

    res = read_run(path, visitors)
    for t in res.tasks:
        res.log(t).extra[PREDICTION_TEXTS] = texts[t]
    return res


LABEL_CHARS = 60


@dataclass
class RunColumn:
    """One run as a report column; per-sample records are read once and cached."""

    label: str
    res: RunResults
    is_baseline: bool = False
    _raw: dict[str, tuple[str, Any]] = field(default_factory=dict, repr=False)
    _typed: dict[str, tuple[dict[str, SampleRecord], int]] = field(default_factory=dict, repr=False)
    _views: dict[str, tuple[str, Any]] = field(default_factory=dict, repr=False)

    def view(self, task: str) -> TaskView:
        """``task``'s samples for the page (:class:`TaskView`); raises UserError like :meth:`records`."""
        if task not in self._views:
            try:
                self._views[task] = ("ok", self._make_view(task))
            except UserError as e:
                self._views[task] = ("err", e)
        status, val = self._views[task]
        if status == "err":
            raise val
        return val

    def _make_view(self, task: str) -> TaskView:
        kept = self.res.kept_log(task)
        texts: list[str] = []
        log: TaskLog | None = None
        if kept is not None and PREDICTION_TEXTS in kept.extra:
            log, texts = kept, kept.extra[PREDICTION_TEXTS]  # gathered when the run was checked
        else:
            try:
                log = self.res.log(task, prediction_texts(texts))
            except UserError:
                log = None
        if log is not None and len(set(log.ids)) == len(log.ids) and len(texts) == len(log.ids):
            return TaskView(log.ids, log=log, predictions=texts)
        typed = self.by_id(task)  # a log the checks would refuse: every record typed, as stored
        return TaskView(list(typed), typed=typed, skipped=self.skipped(task))

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
