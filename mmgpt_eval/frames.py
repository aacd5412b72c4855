"""Results as pandas DataFrames, in one tidy long format (for notebooks and ``mmgpt-eval export``).

    from mmgpt_eval.frames import metrics_frame, samples_frame
    m = metrics_frame("out")                 # one row per (run, task, metric)
    s = samples_frame("out", "easyvqa")      # one row per (run, sample)

``runs``: a :class:`~mmgpt_eval.results.RunResults`, a :class:`~mmgpt_eval.api.SeriesResults` (each
checkpoint a run, role ``"checkpoint"``), a run folder or results.json path (a folder holding
``series.json`` is a series), or a list of these. With ``include_baseline`` (the default) the baseline a
run stores (``results.baseline["results"]``, written by ``--baseline``) is added as its own rows, role
``"baseline"``, once however many runs share it.

``metrics_frame`` columns: run (:func:`~mmgpt_eval.compare.run_label`), run_dir, role
(candidate / baseline / checkpoint), checkpoint (its path), step
(:func:`~mmgpt_eval.compare.checkpoint_step`), task, metric, value, unit, higher_is_better, kind,
n_samples, template (its name), num_fewshot, primary; and, when a run stores a baseline comparison,
baseline_value, delta, ci_low, ci_high, p_value, n_paired, unpaired_delta (empty on rows without one).
``value`` and ``baseline_value`` are each run's own metric over all its samples; ``unpaired_delta`` is
their difference. ``delta`` (and its interval and p-value) is paired: the mean per-sample difference over
the ``n_paired`` samples that have a per-sample value in both runs (times the metric's scale). The two
differ only when pairing drops samples -- e.g. counting's ``mae`` counts parsable answers only, so a
sample parsable in one run and not the other leaves the pair; corpus-only metrics have no paired
values (``delta`` = ``unpaired_delta``, ``n_paired`` empty).

Judged runs (a ``judge.json``, :mod:`mmgpt_eval.judge_results`; ``include_judge``, the default): the
judge's metrics are rows of ``metrics_frame`` too, named ``judge.<name>`` (the gate's rule syntax), with
kind ``judge``, n_samples the judged items, and three more columns on every row: source (``results`` or
``judge``), value_ci_low and value_ci_high (the judge metric's own 95% interval, over items and judge
repeats). A judge row's baseline_value / delta / ci_low / ci_high are the baseline's value and the paired
``<name>_delta`` with its interval, when judging had a baseline. ``judgments_frame`` has one row per
judgment (``judge/<task>.jsonl`` line): run, run_dir, role, task, id, mode, answers (whose answer was
judged: candidate or baseline), turn, repeat, outcome, verdicts (JSON text), failure, rationale, and one
``score_<dimension>`` column per score the judge gave (rubric dimensions; relative: reference /
candidate; grade: score). A stale judge.json (its logs changed since) is a one-line UserError.

``samples_frame`` columns: run, run_dir, role, task, id, prompt, raw, prediction, references (JSON
text unless a string), images (joined with ``", "``), generated_tokens, stopped_on_eos, and one
``metric_<key>`` column per per-sample metric: numbers as numbers; a column holding anything else
(dialogue turns, lists) holds JSON text. Only the records a run's results count are read (the log's
first ``n_samples``; older extras the runner keeps after them are not part of the run).

Every run is validated as :func:`mmgpt_eval.results.read_run` validates it (results field types, then
each log against the results) before a row of it is made; a run that fails is a one-line UserError.

pandas is imported inside the functions, so importing :mod:`mmgpt_eval` stays light.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .errors import UserError
from .io import iter_jsonl
from .numbers import number
from .records import is_header
from .results import RunResults, check_run

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

METRIC_COLUMNS = [
    "run",
    "run_dir",
    "role",
    "checkpoint",
    "step",
    "task",
    "metric",
    "value",
    "unit",
    "higher_is_better",
    "kind",
    "n_samples",
    "template",
    "num_fewshot",
    "primary",
]
COMPARISON_COLUMNS = ["baseline_value", "delta", "ci_low", "ci_high", "p_value", "n_paired", "unpaired_delta"]
SAMPLE_COLUMNS = [
    "run",
    "run_dir",
    "role",
    "task",
    "id",
    "prompt",
    "raw",
    "prediction",
    "references",
    "images",
    "generated_tokens",
    "stopped_on_eos",
]
SAMPLE_METRIC_PREFIX = "metric_"
JUDGE_METRIC_COLUMNS = ["source", "value_ci_low", "value_ci_high"]
JUDGMENT_COLUMNS = [
    "run",
    "run_dir",
    "role",
    "task",
    "id",
    "mode",
    "answers",
    "turn",
    "repeat",
    "outcome",
    "verdicts",
    "failure",
    "rationale",
]
JUDGMENT_SCORE_PREFIX = "score_"
#: judge metrics where lower is better (the rest: higher; alpha/kappa are agreement, higher)
_JUDGE_LOWER = ("position_bias", "parse_failure_rate")


@dataclass
class FrameRun:
    """One run as the frames see it: the results, its role and step."""

    results: RunResults
    role: str
    step: float | None
    #: samples-table rows gathered while a task's log was read (:meth:`sample_rows`), by task
    rows: dict[str, "SampleRows"] = field(default_factory=dict, repr=False, compare=False)

    def sample_rows(self, task: str) -> "SampleRows":
        """A collector for ``task``'s rows, kept here: pass its ``add`` as the ``visit`` of the read that
        checks the log (:func:`mmgpt_eval.results.check_run`) and the table needs no read of its own."""
        self.rows[task] = SampleRows(self.results.tasks[task].n_samples)
        return self.rows[task]


# ------------------------------------------------------------------------------------------ runs
def load_runs(path: str | os.PathLike) -> list[FrameRun]:
    """A run folder / results.json, or a series folder (``series.json``: each checkpoint a run)."""
    p = Path(path)
    if p.is_dir() and (p / "series.json").is_file():
        return _series_runs(p)
    if p.is_dir() and not (p / "results.json").is_file():
        raise UserError("no results.json (nor series.json) in this folder; not a run folder", p)
    if not p.exists():
        raise UserError("no such run folder or results file", p)
    return [_run(RunResults.load(p), "candidate")]


def _series_runs(folder: Path) -> list[FrameRun]:
    from .io import read_json

    data = read_json(folder / "series.json")
    entries = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError("malformed series.json (no checkpoints list)", folder / "series.json")
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("results"), str):
            raise UserError("malformed series.json (a checkpoint without results)", folder / "series.json")
        p = folder / e["results"]
        if not p.is_file():
            raise UserError("a checkpoint of this series has no results.json", p)
        out.append(_run(RunResults.load(p), "checkpoint", e.get("step")))
    return out


def _run(results: RunResults, role: str, fallback_step: Any = None) -> FrameRun:
    from .compare import checkpoint_step

    step = checkpoint_step(results)
    return FrameRun(results, role, number(fallback_step) if step is None else step)


def collect_runs(runs: Any, include_baseline: bool = True) -> list[FrameRun]:
    """Every run ``runs`` names (see the module docstring), then the stored baselines not given already."""
    items = runs if isinstance(runs, (list, tuple)) else [runs]
    out: list[FrameRun] = []
    for item in items:
        if isinstance(item, FrameRun):
            out.append(item)
        elif isinstance(item, RunResults):
            out.append(_run(item, "candidate"))
        elif _is_series(item):
            steps = [e.get("step") if isinstance(e, dict) else None for e in item.entries]
            steps += [None] * (len(item.runs) - len(steps))
            out.extend(_run(r, "checkpoint", s) for r, s in zip(item.runs, steps))
        elif isinstance(item, (str, os.PathLike)):
            out.extend(load_runs(item))
        else:
            raise UserError(
                f"cannot make a frame of {type(item).__name__}: give RunResults, SeriesResults, "
                "a run folder or a list of these"
            )
    if include_baseline:
        seen = {_key(fr.results) for fr in out}
        for fr in list(out):
            base = fr.results.stored_baseline()
            if base is not None and _key(base) not in seen:
                seen.add(_key(base))
                out.append(FrameRun(base, "baseline", None))
    return out


def _is_series(item: Any) -> bool:
    """A checkpoint series' results (``api.SeriesResults``: its runs and their entries), recognised by
    shape so that reading runs does not import the evaluation API."""
    return isinstance(getattr(item, "runs", None), list) and isinstance(getattr(item, "entries", None), list)


def _key(r: RunResults) -> Any:
    return str(r.path.resolve()) if r.path is not None else id(r)


def _run_dir(r: RunResults) -> str | None:
    if r.run_dir is not None:
        return str(r.run_dir)
    out = r.run.get("output_dir") if isinstance(r.run, dict) else None
    return str(out) if out else None


def _checkpoint(r: RunResults) -> str | None:
    ck = r.model.get("checkpoint") if isinstance(r.model, dict) else None
    return str(ck["path"]) if isinstance(ck, dict) and ck.get("path") else None


# ------------------------------------------------------------------------------------------ metrics
def _judged(r: RunResults) -> Any:
    """The run's judge.json (checked against its logs), or None."""
    from .judge_results import read_judge

    folder = r.run_dir
    return read_judge(folder) if folder is not None else None


def _judge_rows(r: RunResults, base: dict[str, Any]) -> list[dict[str, Any]]:
    j = _judged(r)
    rows: list[dict[str, Any]] = []
    if j is None:
        return rows
    for task, tj in j.tasks.items():
        for name, value in tj.metrics.items():
            if name.endswith("_delta"):
                continue
            lo, hi = tj.intervals.get(name, (None, None))
            d = tj.metrics.get(f"{name}_delta")
            dlo, dhi = tj.intervals.get(f"{name}_delta", (None, None))
            bv = tj.baseline_metrics.get(name)
            rows.append(
                {
                    **base,
                    "task": task,
                    "metric": f"judge.{name}",
                    "value": value,
                    "unit": None,
                    "higher_is_better": not name.startswith(_JUDGE_LOWER),
                    "kind": "judge",
                    "n_samples": tj.n_items,
                    "template": None,
                    "num_fewshot": 0,
                    "primary": False,
                    "baseline_value": bv,
                    "delta": d,
                    "ci_low": dlo,
                    "ci_high": dhi,
                    "p_value": None,
                    "n_paired": tj.n_items if d is not None else None,
                    "unpaired_delta": None if bv is None or value is None else value - bv,
                    "source": "judge",
                    "value_ci_low": lo,
                    "value_ci_high": hi,
                }
            )
    return rows


def metrics_frame(runs: Any, include_baseline: bool = True, include_judge: bool = True) -> "pd.DataFrame":
    """One row per (run, task, metric), the judge's metrics included; see the module docstring."""
    import pandas as pd

    from .compare import run_label

    rows: list[dict[str, Any]] = []
    any_comparisons = any_judge = False
    for fr in collect_runs(runs, include_baseline):
        r = check_run(fr.results)  # its logs must agree with its metrics (read once; not again when checked)
        if include_judge:
            base = {
                "run": run_label(r),
                "run_dir": _run_dir(r),
                "role": fr.role,
                "checkpoint": _checkpoint(r),
                "step": fr.step,
            }
            judge_rows = _judge_rows(r, base)
            any_judge = any_judge or bool(judge_rows)
            any_comparisons = any_comparisons or any(x["baseline_value"] is not None for x in judge_rows)
        else:
            judge_rows = []
        comps: dict[tuple[Any, Any], dict[str, Any]] = {}
        if isinstance(r.baseline, dict) and isinstance(r.baseline.get("comparisons"), list):
            any_comparisons = True
            comps = {(c.get("task"), c.get("metric")): c for c in r.baseline["comparisons"] if isinstance(c, dict)}
        label, run_dir, ckpt = run_label(r), _run_dir(r), _checkpoint(r)
        for task, tr in r.tasks.items():
            for metric, value in tr.metrics.items():
                info = tr.metric_info.get(metric) or {}
                hib = info.get("higher_is_better")
                row = {
                    "run": label,
                    "run_dir": run_dir,
                    "role": fr.role,
                    "checkpoint": ckpt,
                    "step": fr.step,
                    "task": task,
                    "metric": metric,
                    "value": number(value),
                    "unit": info.get("unit"),
                    "higher_is_better": None if hib is None else bool(hib),
                    "kind": info.get("kind"),
                    "n_samples": tr.n_samples,
                    "template": (tr.template or {}).get("name"),
                    "num_fewshot": tr.num_fewshot or 0,
                    "primary": metric == tr.primary_metric,
                }
                c = comps.get((task, metric), {})
                base_value, cand_value = number(c.get("baseline")), number(c.get("candidate"))
                row.update(
                    {
                        "baseline_value": base_value,
                        "delta": number(c.get("delta")),
                        "ci_low": number(c.get("ci_low")),
                        "ci_high": number(c.get("ci_high")),
                        "p_value": number(c.get("p_value")),
                        # 0 pairs: a corpus-only metric (no per-sample values), or no comparison stored
                        "n_paired": number(c.get("n")) or None,
                        "unpaired_delta": None if base_value is None or cand_value is None else cand_value - base_value,
                        "source": "results",
                        "value_ci_low": None,
                        "value_ci_high": None,
                    }
                )
                rows.append(row)
        rows += judge_rows
    cols = (
        METRIC_COLUMNS + (COMPARISON_COLUMNS if any_comparisons else []) + (JUDGE_METRIC_COLUMNS if any_judge else [])
    )
    df = pd.DataFrame([{k: row[k] for k in cols} for row in rows], columns=cols)
    for col in ("step", "value", *COMPARISON_COLUMNS, "value_ci_low", "value_ci_high"):
        if col in df:
            df[col] = df[col].astype("float64")
    df["n_samples"] = df["n_samples"].astype("int64")
    df["num_fewshot"] = df["num_fewshot"].astype("int64")
    df["primary"] = df["primary"].astype(bool)
    return df


# ------------------------------------------------------------------------------------------ samples
# json.dumps(v, ensure_ascii=False, sort_keys=True), with its encoder made once (a table calls it per sample)
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def _json_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return _JSON_TEXT(v)


class SampleRows:
    """The samples-table rows of one run and task, made from each record as its log is read: per record
    one tuple of its own cells followed by its per-sample metric values, in the order of :attr:`keys`
    (the metric keys in order of first appearance; a record has no value for the keys that appear after
    it). Only the records a run's results count are kept (the first ``n_samples``)."""

    N_CELLS = len(SAMPLE_COLUMNS) - 4  # the cells after run, run_dir, role and task

    def __init__(self, n_samples: Any) -> None:
        self.cap = n_samples if isinstance(n_samples, int) and n_samples >= 0 else None
        self.cells: list[tuple[Any, ...]] = []
        self.keys: list[str] = []
        self._known: set[str] = set()

    def add(self, rec: dict[str, Any]) -> None:
        if self.cap is not None and len(self.cells) >= self.cap:
            return
        ms: Any = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
        keys = self.keys
        for k in ms:
            if k not in self._known:
                self._known.add(k)
                keys.append(k)
        images = rec.get("images")
        tokens = rec.get("generated_tokens")
        eos = rec.get("stopped_on_eos")
        self.cells.append(
            (
                str(rec["id"]),
                rec.get("prompt"),
                rec.get("raw"),
                rec.get("prediction"),
                _json_text(rec.get("references")),
                ", ".join(map(str, images)) if isinstance(images, list) else _json_text(images),
                tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
                eos if isinstance(eos, bool) else None,
                *[ms.get(k) for k in keys],
            )
        )

    def rows(self, head: tuple[Any, ...], metric_keys: list[str]) -> Iterator[tuple[Any, ...]]:
        """The full rows: ``head`` + cells + the values of ``metric_keys`` (None where a record has none)."""
        n, width = self.N_CELLS, len(metric_keys)
        if metric_keys[: len(self.keys)] == self.keys:  # the table's columns extend this run's: pad
            for c in self.cells:
                yield head + c + (None,) * (n + width - len(c))
            return
        where = {k: j for j, k in enumerate(self.keys)}
        idx = [n + where[k] if k in where else -1 for k in metric_keys]
        for c in self.cells:
            yield head + c[:n] + tuple(c[j] if 0 <= j < len(c) else None for j in idx)

    def read(self, r: RunResults, task: str) -> "SampleRows":
        """Every record of ``task``'s log (for runs whose log was not read with :meth:`add`)."""
        for _, obj in iter_jsonl(r.samples_path(task)):
            if not is_header(obj):
                self.add(obj)
        return self


def samples_frame(runs: Any, task: str, include_baseline: bool = True) -> "pd.DataFrame":
    """One row per (run, sample) of ``task``; see the module docstring for the columns. Runs without the
    task are skipped; a task no run has is a UserError. Each log is checked against its run's results
    (:meth:`~mmgpt_eval.results.RunResults.check_samples`) in the read that makes the rows."""
    return _samples(collect_runs(runs, include_baseline), task)


def _samples(frs: list[FrameRun], task: str) -> "pd.DataFrame":
    import pandas as pd

    from .compare import run_label

    frs = [fr for fr in frs if task in fr.results.tasks]
    if not frs:
        raise UserError(f"task {task!r} is not in any of the runs")
    parts: list[tuple[tuple[Any, ...], SampleRows]] = []
    metric_keys: list[str] = []
    seen: set[str] = set()
    for fr in frs:
        r = fr.results
        got = fr.rows.pop(task, None)  # rows gathered for one table (their text lives on in the table)
        if got is None:
            got = SampleRows(r.tasks[task].n_samples)
            if r.is_checked(task):
                got.read(r, task)
            else:  # the log's check gathers the rows in the same read
                r.check_samples(task, got.add)
        parts.append(((run_label(r), _run_dir(r), fr.role, task), got))
        for k in got.keys:
            if k not in seen:
                seen.add(k)
                metric_keys.append(k)
    cols = SAMPLE_COLUMNS + [SAMPLE_METRIC_PREFIX + k for k in metric_keys]
    rows = [row for head, part in parts for row in part.rows(head, metric_keys)]
    return tidy_samples(pd.DataFrame(rows, columns=cols))


def tidy_samples(df: "pd.DataFrame") -> "pd.DataFrame":
    """Column types a file keeps: per-sample metric columns all numbers (float) or all JSON text,
    generated_tokens an integer column (nullable when some are missing), text columns text."""
    import pandas as pd

    for c in df.columns:
        if c.startswith(SAMPLE_METRIC_PREFIX):
            vals = [v for v in df[c] if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if all(isinstance(v, (int, float)) for v in vals):  # bools too (as 0/1)
                df[c] = pd.array([None if _missing(v) else float(v) for v in df[c]], dtype="float64")
            else:
                df[c] = pd.array([None if _missing(v) else _json_text(v) for v in df[c]], dtype=object)
    if len(df):
        tok = df["generated_tokens"]
        df["generated_tokens"] = tok.astype("Int64") if tok.isna().any() else tok.astype("int64")
        eos = df["stopped_on_eos"]
        df["stopped_on_eos"] = eos.astype("boolean") if eos.isna().any() else eos.astype(bool)
    return df


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def samples_frames(runs: Any, tasks: Iterable[str] | None = None, include_baseline: bool = True) -> "pd.DataFrame":
    """The samples of several tasks (default: every task of every run) in one long table (task column)."""
    import pandas as pd

    frs = collect_runs(runs, include_baseline)
    names: list[str] = []
    for fr in frs:
        names += [t for t in fr.results.tasks if t not in names]
    wanted = list(tasks) if tasks is not None else names
    unknown = [t for t in wanted if t not in names]
    if unknown:
        raise UserError(f"task(s) {', '.join(unknown)} are not in any of the runs (they have: {', '.join(names)})")
    frames = [_samples(frs, t) for t in wanted]
    if not frames:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    return tidy_samples(pd.concat(frames, ignore_index=True, sort=False))


# ------------------------------------------------------------------------------------------ judgments
def judgments_frame(runs: Any, include_baseline: bool = True, tasks: Iterable[str] | None = None) -> "pd.DataFrame":
    """One row per judgment of every judged run (``judge/<task>.jsonl``; runs without judge.json add
    none); see the module docstring for the columns. ``tasks``: only these tasks."""
    import pandas as pd

    from .compare import run_label
    from .judge_results import iter_judgments

    wanted = set(tasks) if tasks is not None else None
    rows: list[dict[str, Any]] = []
    score_cols: list[str] = []
    for fr in collect_runs(runs, include_baseline):
        j = _judged(fr.results)
        if j is None:
            continue
        label, run_dir = run_label(fr.results), _run_dir(fr.results)
        for task in j.tasks:
            if wanted is not None and task not in wanted:
                continue
            for line in iter_judgments(j, task):
                row: dict[str, Any] = {
                    "run": label,
                    "run_dir": run_dir,
                    "role": fr.role,
                    "task": task,
                    "id": line.id,
                    "mode": line.mode,
                    "answers": line.run,
                    "turn": line.turn,
                    "repeat": line.repeat,
                    "outcome": line.outcome,
                    "verdicts": None if line.verdicts is None else _JSON_TEXT(list(line.verdicts)),
                    "failure": line.failure,
                    "rationale": line.rationale,
                }
                for dim, v in (line.scores or {}).items():
                    col = JUDGMENT_SCORE_PREFIX + str(dim)
                    if col not in score_cols:
                        score_cols.append(col)
                    row[col] = v
                rows.append(row)
    cols = JUDGMENT_COLUMNS + score_cols
    df = pd.DataFrame([{k: row.get(k) for k in cols} for row in rows], columns=cols)
    for c in score_cols:
        df[c] = df[c].astype("float64")
    if len(df):
        df["turn"] = df["turn"].astype("int64")
        df["repeat"] = df["repeat"].astype("int64")
    return df
