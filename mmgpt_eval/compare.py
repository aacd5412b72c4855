"""Pairing runs: per-sample metric values by sample id, and paired comparisons of every metric.

Shared by ``compare``, ``gate`` and the HTML report. Two runs are compared on the samples they share
by id; different sample sets are an error unless ``intersect`` is set (then the counts are reported).
Per-sample values that are ``None`` (a probe that does not apply, an unparsable count for MAE) are
dropped pairwise; which values apply is decided by the task's data, not by the model output, except
where a task documents otherwise (counting MAE), so the dropped counts are reported too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .numbers import number
from .records import SampleRecord
from .results import RunResults
from .stats import compare_metric

STAT_KINDS = ("binary", "continuous", "corpus")


@dataclass(frozen=True)
class MetricSamples:
    """Per-sample values of one metric in one run, as returned by ``fetch``.

    ``ids``: one id (``str`` or ``int``) per sample, unique; ``values[i]`` belongs to
    ``ids[i]``. ``kind``: ``"binary"``, ``"continuous"`` or ``"corpus"`` (see
    :mod:`mmgpt_eval.stats`). ``corpus_value``: the metric as the run reports it, optional;
    when given it must agree with ``scale * mean(values)`` at the precision it was stored with
    (binary/continuous, :mod:`mmgpt_eval.agreement`) or within 1 % (corpus), a check against unit
    mix-ups (accuracy as a fraction vs percent), wrong files and edited values. ``scale``
    converts the per-sample mean into the reported units (100 for an accuracy reported in
    percent from 0/1 per-sample values); margins are in those reported units.
    """

    ids: Sequence[str | int]
    values: Sequence[float] | np.ndarray
    kind: str
    corpus_value: float | None = None
    scale: float = 1.0

    @classmethod
    def coerce(cls, obj: Any, label: str) -> "MetricSamples":
        if isinstance(obj, MetricSamples):
            return obj
        if isinstance(obj, tuple) and len(obj) == 4:
            return cls(*obj)
        raise UserError(
            f"{label}: fetch returned {type(obj).__name__}; expected MetricSamples or (ids, values, kind, corpus_value)"
        )


@dataclass(frozen=True)
class PairedIds:
    """Two runs' sample ids matched: the common ids in canonical order (integers by value, then strings),
    and the ids only one run has, in that run's order."""

    common: list[Any]
    only_a: list[Any]
    only_b: list[Any]

    @property
    def same(self) -> bool:
        return not self.only_a and not self.only_b


def pair_ids(a_ids: Sequence[Any], b_ids: Sequence[Any]) -> PairedIds:
    """Pair two runs' samples by id -- the one place compare, report and gate do it."""
    in_a, in_b = set(a_ids), set(b_ids)
    both = in_a & in_b
    if all(type(v) is str for v in both):  # ids read from logs: plain text order, no key needed
        common = sorted(both)
    else:
        common = sorted(both, key=lambda v: (0, v) if isinstance(v, int) else (1, v))
    return PairedIds(common, [v for v in a_ids if v not in in_b], [v for v in b_ids if v not in in_a])


def _typed(records: list[Any], where: Any) -> list[SampleRecord]:
    return [r if isinstance(r, SampleRecord) else SampleRecord.from_dict(r, where) for r in records]


def metric_samples(run: RunResults, task: str, metric: str, records: list[Any] | None = None) -> MetricSamples:
    """Per-sample values of ``task/metric`` in ``run`` (raises KeyError if the run lacks it)."""
    if task not in run.tasks:
        raise KeyError(task)
    tr = run.tasks[task]
    info = tr.metric_info.get(metric)
    if info is None or metric not in tr.metrics:
        raise KeyError(f"{task}/{metric}")
    if info["kind"] not in STAT_KINDS or not info.get("per_sample"):
        raise UserError(f"{task}/{metric} is a corpus-only metric: it has no per-sample values to compare")
    key = info["per_sample"]
    if records is None:
        ids, values = run.log(task).metric(key)
    else:
        ids, values = [], []
        for r in _typed(records, run.path):
            v = r.metrics.get(key)
            if v is None:
                continue
            ids.append(r.id)
            values.append(float(v))
    return MetricSamples(
        ids=ids,
        values=values,
        kind=info["kind"],
        corpus_value=tr.metrics.get(metric),
        scale=float(info.get("scale", 1.0)),
    )


@dataclass
class MetricComparison:
    task: str
    metric: str
    kind: str
    higher_is_better: bool
    unit: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None
    n: int = 0
    n_dropped: int = 0
    note: str = ""

    @property
    def improved(self) -> bool | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        better_low = self.ci_low if self.higher_is_better else -self.ci_high
        worse_high = self.ci_high if self.higher_is_better else -self.ci_low
        if better_low > 0:
            return True
        if worse_high < 0:
            return False
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------ runs
def run_label(run: RunResults) -> str:
    """What was evaluated: ``--label``, else the checkpoint's name, else the model spec's name, else the
    run folder's name."""
    r = run.run if isinstance(run.run, dict) else {}
    if r.get("label"):
        return str(r["label"])
    model = run.model if isinstance(run.model, dict) else {}
    ck: Any = model.get("checkpoint") if isinstance(model.get("checkpoint"), dict) else {}
    if ck.get("path"):
        return Path(str(ck["path"])).name
    spec: Any = model.get("model_spec") if isinstance(model.get("model_spec"), dict) else {}
    if spec.get("name"):
        return str(spec["name"])
    return run.run_dir.name if run.run_dir is not None else "run"


def step_from_metadata(meta: Any) -> float | None:
    """The training step (or global step, or epoch) a checkpoint's metadata records, including the
    ``mmgpt_eval.json`` our trainer writes beside PEFT adapters; None when it records none."""
    if not isinstance(meta, dict):
        return None
    for k in ("step", "global_step", "epoch"):
        for d in (meta, meta.get("mmgpt_eval")):
            v = d.get(k) if isinstance(d, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
    return None


def checkpoint_step(run: RunResults) -> float | None:
    """The step of the checkpoint a run evaluated (from its recorded metadata), None without one."""
    model = run.model if isinstance(run.model, dict) else {}
    ck: Any = model.get("checkpoint") if isinstance(model.get("checkpoint"), dict) else {}
    return step_from_metadata(ck.get("metadata"))


# ------------------------------------------------------------------------------------------ samples
def sample_ids(run: RunResults, task: str) -> list[str]:
    return run.log(task).ids


def check_same_samples(a: RunResults, b: RunResults, task: str, intersect: bool) -> tuple[set[str], str]:
    a_ids, b_ids = sample_ids(a, task), sample_ids(b, task)
    ia, ib = set(a_ids), set(b_ids)
    if ia == ib:
        return ia, ""
    p = pair_ids(a_ids, b_ids)
    only_a, only_b = sorted(p.only_a), sorted(p.only_b)
    msg = (
        f"task {task}: the runs evaluated different samples ({len(only_a)} only in the first, e.g. "
        f"{', '.join(only_a[:3]) or '-'}; {len(only_b)} only in the second, e.g. {', '.join(only_b[:3]) or '-'})"
    )
    if not intersect:
        raise UserError(msg + "; pass --intersect to compare on the common samples")
    return ia & ib, msg + f"; compared on the {len(ia & ib)} common samples"


def _kept(s: MetricSamples, keep: set[str]) -> MetricSamples:
    """``s`` restricted to the samples in ``keep``."""
    pairs = [(i, v) for i, v in zip(s.ids, s.values) if i in keep]
    return MetricSamples([i for i, _ in pairs], [v for _, v in pairs], s.kind, s.corpus_value, s.scale)


def compare_runs(
    baseline: RunResults,
    candidate: RunResults,
    *,
    intersect: bool = False,
    tasks: list[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
) -> list[MetricComparison]:
    out: list[MetricComparison] = []
    common = [t for t in candidate.tasks if t in baseline.tasks and (tasks is None or t in tasks)]
    if tasks:
        missing = [t for t in tasks if t not in common]
        if missing:
            raise UserError(f"task(s) {', '.join(missing)} are not in both runs")
    for task in common:
        keep, note = check_same_samples(baseline, candidate, task, intersect)
        tb = candidate.tasks[task]
        for metric, info in tb.metric_info.items():
            if metric not in tb.metrics or metric not in baseline.tasks[task].metrics:
                continue
            va, vb = number(baseline.tasks[task].metrics[metric]), number(tb.metrics[metric])
            mc = MetricComparison(
                task,
                metric,
                info["kind"],
                bool(info.get("higher_is_better", True)),
                info.get("unit", ""),
                va,
                vb,
                None if va is None or vb is None else vb - va,
                note=note,
            )
            if info["kind"] in STAT_KINDS and info.get("per_sample"):
                sa, sb = metric_samples(baseline, task, metric), metric_samples(candidate, task, metric)
                if note:  # different sample sets: compared on the common ones
                    sa, sb = _kept(sa, keep), _kept(sb, keep)
                da = dict(zip(sa.ids, sa.values))
                db = dict(zip(sb.ids, sb.values))
                ids = pair_ids(sa.ids, sb.ids).common
                mc.n = len(ids)
                mc.n_dropped = len(keep) - len(ids)
                if len(ids) >= 2:
                    c = compare_metric(
                        np.array([da[i] for i in ids]),
                        np.array([db[i] for i in ids]),
                        info["kind"],
                        mc.higher_is_better,
                        name=f"{task}/{metric}",
                        confidence=confidence,
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                    scale = float(info.get("scale", 1.0))
                    mc.ci_low, mc.ci_high = c.ci_low * scale, c.ci_high * scale
                    mc.p_value, mc.test = c.p_value, c.test
                    # the delta of the paired samples, so it always matches its interval (it differs
                    # from candidate - baseline only when per-sample values were dropped pairwise)
                    mc.delta = c.delta * scale
            else:
                mc.note = (note + "; " if note else "") + "corpus-only metric: no per-sample interval"
            out.append(mc)
    return out


# ------------------------------------------------------------------------------------------ judgments
@dataclass
class JudgeComparison:
    """The judge metrics of several runs side by side (``values[i]`` / ``intervals[i]``: run ``i``'s),
    and notes: runs judged by different judges (their numbers are not comparable), stale judgments."""

    runs: list[str]
    rows: list[dict[str, Any]]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "rows": self.rows, "notes": self.notes}


def _judge_of(run: RunResults, notes: list[str]) -> Any:
    from .judge_results import read_judge

    if run.run_dir is None:
        return None
    try:
        return read_judge(run.run_dir)
    except UserError as e:
        notes.append(f"{run_label(run)}: judgments not shown ({e})")
        return None


def compare_judgments(runs: Sequence[RunResults], tasks: Sequence[str] | None = None) -> JudgeComparison | None:
    """Every judge metric of the runs that were judged (``judge.json``), run by run; a run judged only
    as another run's baseline shows the values that judging gave it. None when no run was judged."""
    notes: list[str] = []
    judged = [_judge_of(r, notes) for r in runs]
    folders = [r.run_dir.resolve() if r.run_dir is not None else None for r in runs]
    if all(j is None for j in judged) and not notes:
        return None
    # a run judged only as another's baseline: the metrics that judging gave its answers
    as_baseline: dict[int, tuple[Any, str]] = {}
    for j in judged:
        if j is not None and j.baseline is not None:
            b = Path(j.baseline["run_dir"]).resolve()
            for i, f in enumerate(folders):
                if f == b and judged[i] is None:
                    as_baseline[i] = (j, "baseline")
    names: list[tuple[str, str]] = []
    for j in judged:
        for task, tj in j.tasks.items() if j is not None else ():
            if tasks is None or task in tasks:
                names += [(task, m) for m in tj.metrics if (task, m) not in names]
    rows = []
    for task, metric in names:
        values: list[float | None] = []
        intervals: list[list[float] | None] = []
        for i, j in enumerate(judged):
            tj = j.tasks.get(task) if j is not None else None
            if tj is not None:
                values.append(tj.metrics.get(metric))
                iv = tj.intervals.get(metric)
                intervals.append(list(iv) if iv is not None else None)
            elif i in as_baseline and task in as_baseline[i][0].tasks:
                values.append(as_baseline[i][0].tasks[task].baseline_metrics.get(metric))
                intervals.append(None)
            else:
                values.append(None)
                intervals.append(None)
        rows.append({"task": task, "metric": metric, "values": values, "intervals": intervals})
    from .judge_results import judge_name, same_judging

    done = [(i, j) for i, j in enumerate(judged) if j is not None]
    if any(not same_judging(done[0][1], j) for _, j in done[1:]):
        who = ", ".join(f"{run_label(runs[i])}: {judge_name(j)}" for i, j in done)
        notes.append(
            f"the runs were judged by different judges, templates or repeats ({who}); their judged numbers are "
            "not comparable"
        )
    return JudgeComparison([str(r.path) for r in runs], rows, notes)
