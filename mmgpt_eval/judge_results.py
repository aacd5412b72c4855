"""What judging a run wrote, and the one way to read it back: ``RUN/judge.json`` (schema
``mmgpt-eval/judge``, version 1) beside ``results.json``, with one JSONL of judgments per task
(``RUN/judge/<task>.jsonl``) and the judgment cache (``RUN/judge/cache.jsonl``).

judge.json is separate from results.json on purpose: judging an existing run (``mmgpt-eval judge
RUN``) adds to the run folder without rewriting what the run measured. Each judged task records the
sha256 of the per-sample log it judged (and of the baseline's); a reader refuses a judge.json whose
logs have changed since (the run was resumed, extended or edited): those judgments no longer describe
the answers in the folder.

Layout of judge.json::

    {"schema": "mmgpt-eval/judge", "schema_version": 1, "created": ISO time, "mmgpt_eval_version": str,
     "judge": {...the judge's identity: backend, model, reported version, template sha256s, sampling},
     "repeats": int >= 1,
     "baseline": null | {"run_dir": str, "label": str},
     "cost": {"calls", "cached", "retries", "failures", "prompt_tokens", "completion_tokens": int >= 0},
     "tasks": {task: {
        "samples_file": "samples/<task>.jsonl", "samples_sha256": hex,
        "baseline_samples_sha256": hex | null,
        "judgments_file": "judge/<task>.jsonl",
        "n_items": int >= 0,
        "metrics": {name: number | null},          # headline values, flat (gate rules name them)
        "intervals": {name: [lo, hi]},             # 95% intervals (samples and judge repeats)
        "counts": {name: int >= 0},                # judgments, parse_failures, win, tie, loss, ...
        "baseline_metrics": {name: number | null}, # the same metrics for the baseline's answers
        "breakdown": {group: {name: number | null}},
        "notes": [str]}}}

Metric names (those that apply to the task's modes): ``rubric_overall`` and ``rubric_<dimension>``
(1-10), ``relative_score`` (100 x candidate / reference), ``grade_score`` (0-1), ``win_rate`` (wins
plus half the ties, over the pairs), ``position_bias`` (share of pairs whose verdict follows the
position), ``parse_failure_rate``, ``alpha_<dimension>`` (Krippendorff's alpha across repeats),
``kappa_pairwise`` (Fleiss' kappa of the pairwise outcomes across repeats). ``<name>_delta`` in
metrics/intervals: the candidate minus the baseline, paired by item.

One line of ``judge/<task>.jsonl`` (:class:`JudgmentLine`, read by :func:`iter_judgments`)::

    {"id": str, "mode": "rubric" | "relative" | "grade" | "pairwise", "run": "candidate" | "baseline",
     "turn": int >= 0, "repeat": int >= 0,
     "scores": {dimension: int} | null,    # rubric 1-10 per dimension; relative {"reference", "candidate"};
                                           # grade {"score": 0..10} (tenths); null for pairwise or a failure
     "outcome": "win" | "tie" | "loss" | null,   # pairwise, the candidate's view after both orders
     "verdicts": [str | null, str | null] | null, # pairwise: the two orders' verdicts as the judge gave them
     "failure": str | null,                # why no score: a parse failure or a call that failed
     "rationale": str}                     # the judge's reply (pairwise: the candidate-first order's)"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError
from .io import atomic_write_json, iter_jsonl, read_json, sha256_file

JUDGE_SCHEMA = "mmgpt-eval/judge"
JUDGE_SCHEMA_VERSION = 1
JUDGE_FILE = "judge.json"
JUDGE_DIR = "judge"
CACHE_FILE = "cache.jsonl"
COST_KEYS = ("calls", "cached", "retries", "failures", "prompt_tokens", "completion_tokens")


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v))


@dataclass
class TaskJudgment:
    """One task's judging of a run (see the module docstring for each field)."""

    samples_file: str
    samples_sha256: str
    judgments_file: str
    n_items: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    baseline_samples_sha256: str | None = None
    baseline_metrics: dict[str, float | None] = field(default_factory=dict)
    breakdown: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples_file": self.samples_file,
            "samples_sha256": self.samples_sha256,
            "baseline_samples_sha256": self.baseline_samples_sha256,
            "judgments_file": self.judgments_file,
            "n_items": self.n_items,
            "metrics": dict(self.metrics),
            "intervals": {k: [lo, hi] for k, (lo, hi) in self.intervals.items()},
            "counts": dict(self.counts),
            "baseline_metrics": dict(self.baseline_metrics),
            "breakdown": {g: dict(m) for g, m in self.breakdown.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "TaskJudgment":
        def bad(key: str, what: str) -> UserError:
            return UserError(f"{where}.{key}: {what}")

        if not isinstance(d, dict):
            raise UserError(f"{where}: must be an object")
        for key in ("samples_file", "samples_sha256", "judgments_file"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise bad(key, "must be a non-empty string")
        for key in ("samples_file", "judgments_file"):
            p = Path(d[key])
            if p.is_absolute() or ".." in p.parts:
                raise bad(key, "must be a path inside the run folder")
        base_sha = d.get("baseline_samples_sha256")
        if base_sha is not None and not isinstance(base_sha, str):
            raise bad("baseline_samples_sha256", "must be a string or null")
        n = d.get("n_items")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad("n_items", "must be an integer >= 0")
        metrics = _number_map(d.get("metrics", {}), f"{where}.metrics")
        base_metrics = _number_map(d.get("baseline_metrics", {}), f"{where}.baseline_metrics")
        intervals: dict[str, tuple[float, float]] = {}
        raw_iv = d.get("intervals", {})
        if not isinstance(raw_iv, dict):
            raise bad("intervals", "must be an object")
        for k, iv in raw_iv.items():
            if not (isinstance(iv, list) and len(iv) == 2 and all(_number(x) and x is not None for x in iv)):
                raise bad(f"intervals.{k}", "must be [low, high] numbers")
            if iv[0] > iv[1]:
                raise bad(f"intervals.{k}", "low is above high")
            intervals[k] = (float(iv[0]), float(iv[1]))
        counts = d.get("counts", {})
        if not isinstance(counts, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
        ):
            raise bad("counts", "must map names to integers >= 0")
        breakdown = d.get("breakdown", {})
        if not isinstance(breakdown, dict):
            raise bad("breakdown", "must be an object")
        groups = {str(g): _number_map(m, f"{where}.breakdown.{g}") for g, m in breakdown.items()}
        notes = d.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(x, str) for x in notes):
            raise bad("notes", "must be a list of strings")
        return cls(
            samples_file=d["samples_file"],
            samples_sha256=d["samples_sha256"],
            judgments_file=d["judgments_file"],
            n_items=n,
            metrics=metrics,
            intervals=intervals,
            counts=dict(counts),
            baseline_samples_sha256=base_sha,
            baseline_metrics=base_metrics,
            breakdown=groups,
            notes=list(notes),
        )


def _number_map(m: Any, where: str) -> dict[str, float | None]:
    if not isinstance(m, dict):
        raise UserError(f"{where}: must be an object")
    for k, v in m.items():
        if not _number(v):
            raise UserError(f"{where}.{k}: must be a number or null, got {v!r}")
    return {str(k): (None if v is None else float(v)) for k, v in m.items()}


@dataclass
class JudgeResults:
    """A run's judge.json (see the module docstring). ``run_dir``: the folder it was read from."""

    judge: dict[str, Any]
    repeats: int
    tasks: dict[str, TaskJudgment]
    cost: dict[str, int] = field(default_factory=lambda: {k: 0 for k in COST_KEYS})
    baseline: dict[str, str] | None = None
    created: str = ""
    mmgpt_eval_version: str = ""
    run_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": JUDGE_SCHEMA,
            "schema_version": JUDGE_SCHEMA_VERSION,
            "created": self.created,
            "mmgpt_eval_version": self.mmgpt_eval_version,
            "judge": self.judge,
            "repeats": self.repeats,
            "baseline": self.baseline,
            "cost": dict(self.cost),
            "tasks": {t: tj.to_dict() for t, tj in self.tasks.items()},
        }

    @classmethod
    def from_dict(cls, d: Any, path: str | os.PathLike = JUDGE_FILE) -> "JudgeResults":
        """Check every field's type (a UserError naming ``path`` and the field otherwise)."""
        where = os.fspath(path)
        if not isinstance(d, dict):
            raise UserError("not a judge.json (not a JSON object)", path)
        if d.get("schema") != JUDGE_SCHEMA:
            raise UserError(f"not a judge.json (schema {d.get('schema')!r}, expected {JUDGE_SCHEMA!r})", path)
        v = d.get("schema_version")
        if v != JUDGE_SCHEMA_VERSION:
            raise UserError(
                f"judge.json schema_version {v!r} is not one this mmgpt-eval reads ({JUDGE_SCHEMA_VERSION}); "
                "judge the run again or upgrade mmgpt-eval",
                path,
            )
        if not isinstance(d.get("judge"), dict):
            raise UserError("judge: must be an object (the judge's identity)", path)
        r = d.get("repeats")
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise UserError("repeats: must be an integer >= 1", path)
        base = d.get("baseline")
        if base is not None and not (
            isinstance(base, dict)
            and all(isinstance(base.get(k), str) for k in ("run_dir", "label"))
            and all(isinstance(x, str) for x in base.values())
        ):
            raise UserError("baseline: must be null or {run_dir, label} strings", path)
        cost = d.get("cost", {})
        if not isinstance(cost, dict) or not all(
            isinstance(cost.get(k, 0), int) and not isinstance(cost.get(k, 0), bool) and cost.get(k, 0) >= 0
            for k in COST_KEYS
        ):
            raise UserError(f"cost: must hold integers >= 0 for {', '.join(COST_KEYS)}", path)
        tasks = d.get("tasks")
        if not isinstance(tasks, dict):
            raise UserError("tasks: must be an object", path)
        for k in ("created", "mmgpt_eval_version"):
            if not isinstance(d.get(k, ""), str):
                raise UserError(f"{k}: must be a string", path)
        return cls(
            judge=d["judge"],
            repeats=r,
            tasks={str(t): TaskJudgment.from_dict(tj, f"{where}: tasks.{t}") for t, tj in tasks.items()},
            cost={k: int(cost.get(k, 0)) for k in COST_KEYS},
            baseline=dict(base) if base is not None else None,
            created=d.get("created", ""),
            mmgpt_eval_version=d.get("mmgpt_eval_version", ""),
        )

    def write(self, run_dir: str | os.PathLike) -> Path:
        """Write ``run_dir/judge.json`` atomically; returns its path."""
        p = Path(run_dir) / JUDGE_FILE
        atomic_write_json(p, self.to_dict())
        return p


def same_judging(a: JudgeResults, b: JudgeResults) -> bool:
    """Do two judgings compare? The same judge (its identity: backend, model, reported version,
    sampling...), the same text under every template name both used (a judging of other tasks may
    have used other templates too) and the same repeats."""

    def identity(j: JudgeResults) -> dict[str, Any]:
        return {k: v for k, v in j.judge.items() if k != "templates"}

    ta, tb = a.judge.get("templates") or {}, b.judge.get("templates") or {}
    return identity(a) == identity(b) and all(ta[n] == tb[n] for n in set(ta) & set(tb)) and a.repeats == b.repeats


def judge_name(j: JudgeResults) -> str:
    """The judge in a few words: backend, model and the version it reported."""
    k = j.judge
    return " ".join(str(k[x]) for x in ("backend", "model", "version") if k.get(x) not in (None, "")) or "unnamed"


def read_judge(run_dir: str | os.PathLike, check_logs: bool = True) -> JudgeResults | None:
    """``run_dir``'s judge.json, checked, or None when the run was not judged. With ``check_logs``, each
    judged task's per-sample log must still be the one that was judged (same sha256), and its
    judgments file must exist: otherwise a UserError saying to judge the run again."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    p = run_dir / JUDGE_FILE
    if not p.exists():
        return None
    res = JudgeResults.from_dict(read_json(p, kind="results"), p)
    res.run_dir = run_dir
    if check_logs:
        for task, tj in res.tasks.items():
            log = run_dir / tj.samples_file
            if not log.is_file():
                raise UserError(f"tasks.{task}: the judged per-sample log {tj.samples_file} is missing", p)
            if sha256_file(log) != tj.samples_sha256:
                raise UserError(
                    f"tasks.{task}: {tj.samples_file} changed after it was judged (resumed, extended or edited); "
                    f"judge the run again: mmgpt-eval judge {run_dir}",
                    p,
                )
            if not (run_dir / tj.judgments_file).is_file():
                raise UserError(f"tasks.{task}: the judgments file {tj.judgments_file} is missing", p)
    return res


JUDGMENT_MODES = ("rubric", "relative", "grade", "pairwise")
OUTCOMES = ("win", "tie", "loss")


@dataclass(frozen=True)
class JudgmentLine:
    """One judgment as ``judge/<task>.jsonl`` stores it (see the module docstring)."""

    id: str
    mode: str
    run: str
    turn: int
    repeat: int
    scores: dict[str, int] | None
    outcome: str | None
    verdicts: tuple[str | None, str | None] | None
    failure: str | None
    rationale: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mode": self.mode,
            "run": self.run,
            "turn": self.turn,
            "repeat": self.repeat,
            "scores": self.scores,
            "outcome": self.outcome,
            "verdicts": list(self.verdicts) if self.verdicts is not None else None,
            "failure": self.failure,
            "rationale": self.rationale,
        }

    @classmethod
    def from_dict(cls, d: Any, path: Any, line: int) -> "JudgmentLine":
        def bad(what: str) -> UserError:
            return UserError(f"judgment {what}", path, line)

        if not isinstance(d, dict):
            raise bad("must be a JSON object")
        if not isinstance(d.get("id"), str):
            raise bad("id must be a string")
        if d.get("mode") not in JUDGMENT_MODES:
            raise bad(f"mode must be one of {', '.join(JUDGMENT_MODES)}")
        if d.get("run") not in ("candidate", "baseline"):
            raise bad("run must be candidate or baseline")
        for k in ("turn", "repeat"):
            v = d.get(k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(f"{k} must be an integer >= 0")
        scores = d.get("scores")
        if scores is not None and not (
            isinstance(scores, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in scores.values())
        ):
            raise bad("scores must be null or an object of integers")
        if d.get("outcome") not in (None, *OUTCOMES):
            raise bad("outcome must be win, tie, loss or null")
        verdicts = d.get("verdicts")
        if verdicts is not None and not (
            isinstance(verdicts, list) and len(verdicts) == 2 and all(v is None or isinstance(v, str) for v in verdicts)
        ):
            raise bad("verdicts must be null or two strings/nulls")
        if d.get("failure") is not None and not isinstance(d.get("failure"), str):
            raise bad("failure must be a string or null")
        if not isinstance(d.get("rationale", ""), str):
            raise bad("rationale must be a string")
        return cls(
            id=d["id"],
            mode=d["mode"],
            run=d["run"],
            turn=d["turn"],
            repeat=d["repeat"],
            scores=dict(scores) if scores is not None else None,
            outcome=d.get("outcome"),
            verdicts=(verdicts[0], verdicts[1]) if verdicts is not None else None,
            failure=d.get("failure"),
            rationale=d.get("rationale", ""),
        )


def iter_judgments(run: JudgeResults, task: str) -> Iterator[JudgmentLine]:
    """The judgments of ``task`` in a judged run (read with :func:`read_judge`), checked line by line."""
    if run.run_dir is None or task not in run.tasks:
        raise UserError(f"task {task} was not judged in this run", run.run_dir)
    path = run.run_dir / run.tasks[task].judgments_file
    for lineno, d in iter_jsonl(path):
        yield JudgmentLine.from_dict(d, path, lineno)
