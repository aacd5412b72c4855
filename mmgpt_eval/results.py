"""The results file (``OUTDIR/results.json``): typed, versioned, written atomically.

Schema ``mmgpt-eval/results`` version 2 (version 1 files are read too: metrics version 2 renamed,
:data:`RENAMED_IN_VERSION_2`, are read under their new names)::

    {
      "schema": "mmgpt-eval/results", "schema_version": 1, "created": ISO-8601,
      "run":        {"label", "argv", "output_dir", "seed", "batch_size", "limit", "num_fewshot", ...},
      "model":      {"model_spec", "checkpoint": {path, format, sha256, lora}, "load_reports", ...},
      "tasks":      {"<task>": TaskResult},
      "provenance": {"versions", "git", "host", "python", "torch_threads", "wall_time_s", "peak_memory_mb"},
      "baseline":   null | {...}            (added by --baseline)
    }

TaskResult: metrics (corpus values in the scale shown), metric_info (kind / direction / scale /
per-sample key, what the paired statistics need), breakdown, template + its hash, generation settings,
few-shot settings, sample counts, subset rule, notes, timing and the per-sample log path.

The per-sample log path (``samples_file``) is relative to the run folder and must stay inside it
(:meth:`RunResults.samples_path` refuses anything that resolves elsewhere, symlinks followed).
:meth:`RunResults.check_samples` / :func:`check_run` verify that a run folder's logs belong to its
results (``report`` and ``gate`` call it for every run they read): the log's header fingerprint equals
the task's, and the log's first ``n_samples`` records are distinct ids; more records (older extras
the runner keeps after the task's samples) are accepted only when both fingerprints are recorded
and match. A results file without a fingerprint (hand-made) needs exactly ``n_samples`` records. Every
mean-type metric (kind ``binary`` / ``continuous``) must equal the mean of its per-sample values over those
records at the precision it was stored with (:mod:`mmgpt_eval.agreement`).

Reading a run folder: :func:`read_run` is the one entry point of every reader (compare, report, gate,
export and the DataFrames; trackers and the published-numbers view are given runs read by it or just
written): the results with the type of every field checked (:mod:`mmgpt_eval.results_schema`), then
every task's log checked against them (:func:`check_run`), each log read once. Below it:
:meth:`RunResults.load` (the results alone), :meth:`RunResults.log` (a task's log read once as id /
per-sample value columns: what checks, compare and the gate use), :meth:`RunResults.records` /
:meth:`RunResults.samples` (whole records, for what shows them).
"""

from __future__ import annotations

from collections import Counter

import datetime as _dt
import os
import platform
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import UserError
from .io import atomic_write_json, iter_jsonl, read_json
from .agreement import MEAN_KINDS, disagreement
from .records import SAMPLES_SCHEMA, SampleRecord, is_header, read_records, read_samples
from .results_schema import check_results_dict
from .runfolder import TaskLog, read_log

SCHEMA = "mmgpt-eval/results"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: metric kinds with per-sample values (``corpus-only`` has none)
PER_SAMPLE_KINDS = ("binary", "continuous", "corpus")


@dataclass
class TaskResult:
    task: str
    version: str
    metrics: dict[str, float | None]
    metric_info: dict[str, dict[str, Any]]
    primary_metric: str
    n_samples: int
    n_available: int
    limit: int | None
    subset: str
    template: dict[str, str]
    generation: dict[str, Any]
    num_fewshot: int = 0
    fewshot_mode: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    breakdown: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    samples_file: str = ""
    fingerprint: str = ""
    # --truncate left: {"mode", "samples": how many samples' prompts were cut}; absent otherwise
    truncation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["truncation"] is None:
            del d["truncation"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskResult":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class RunResults:
    run: dict[str, Any]
    model: dict[str, Any]
    tasks: dict[str, TaskResult]
    provenance: dict[str, Any]
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    baseline: dict[str, Any] | None = None
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False)
    # per-sample logs read as columns (:meth:`log`), by task
    _logs: dict[str, TaskLog] = field(default_factory=dict, compare=False, repr=False)
    # the tasks whose log passed :meth:`check_samples`
    _checked: set[str] = field(default_factory=set, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "schema_version": self.schema_version,
            "created": self.created,
            "run": self.run,
            "model": self.model,
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "provenance": self.provenance,
            "baseline": self.baseline,
        }

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "results") -> "RunResults":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise UserError(
                f"not an mmgpt-eval results file (schema {d.get('schema') if isinstance(d, dict) else None!r})", where
            )
        if d.get("schema_version") not in READABLE_VERSIONS:
            raise UserError(
                f"results schema version {d.get('schema_version')} is not supported "
                f"(this mmgpt-eval reads versions {', '.join(map(str, READABLE_VERSIONS))})",
                where,
            )
        check_results_dict(d, where)
        try:
            tasks = {k: TaskResult.from_dict(v) for k, v in d["tasks"].items()}
            if d["schema_version"] < 2:
                _apply_metric_renames(tasks)
            return cls(
                run=d["run"],
                model=d["model"],
                tasks=tasks,
                provenance=d["provenance"],
                created=d.get("created", ""),
                baseline=d.get("baseline"),
            )
        except (KeyError, TypeError) as e:
            raise UserError(f"malformed results file ({e})", where) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResults":
        """Load ``results.json`` or a run directory that contains one."""
        p = Path(path)
        if p.is_dir():
            p = p / "results.json"
        r = cls.from_dict(read_json(p, "results"), str(p))
        r.path = p
        return r

    @property
    def run_dir(self) -> Path | None:
        return self.path.parent if self.path else None

    def stored_baseline(self) -> "RunResults | None":
        """The baseline run stored beside these results (``baseline.results``, relative to the run folder),
        if any."""
        if not self.baseline or self.run_dir is None:
            return None
        p = Path(self.baseline["results"])
        return RunResults.load(p if p.is_absolute() else self.run_dir / p)

    def samples_path(self, task: str) -> Path:
        if task not in self.tasks:
            raise UserError(f"task {task!r} is not in this run", self.path)
        folder = self.run_dir
        if folder is None and isinstance(self.run, dict) and self.run.get("output_dir"):
            folder = Path(str(self.run["output_dir"]))  # built in memory, right after a run
        if folder is None:
            raise UserError("results were not loaded from a file; per-sample records unavailable")
        rel = self.tasks[task].samples_file
        if not isinstance(rel, str) or not rel:
            raise UserError(f"task {task}: no samples_file recorded", self.path)
        p = folder / rel
        try:
            inside = p.resolve().is_relative_to(folder.resolve())
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte...
            inside = False
        if not inside:
            raise UserError(
                f"task {task}: samples_file {rel!r} is outside the run folder; a run's per-sample "
                "logs must be inside it",
                self.path or folder,
            )
        return p

    def per_sample_keys(self, task: str) -> list[str]:
        """The per-sample keys of ``task``'s metrics that have per-sample values (binary, continuous,
        corpus): the columns :meth:`log` reads."""
        out = []
        for info in self.tasks[task].metric_info.values():
            if (
                isinstance(info, dict)
                and info.get("kind") in PER_SAMPLE_KINDS
                and isinstance(info.get("per_sample"), str)
            ):
                out.append(info["per_sample"])
        return list(dict.fromkeys(out))

    def log(self, task: str, visit: Callable[[dict[str, Any]], Any] | None = None) -> TaskLog:
        """``task``'s per-sample log as columns (ids, per-sample metric values), read once and kept.
        ``visit(record)`` is called with every record during the read (:func:`mmgpt_eval.runfolder.read_log`):
        given, the log is read (again) even when kept."""
        if task not in self._logs or visit is not None:
            self._logs[task] = read_log(self.samples_path(task), self.per_sample_keys(task), visit)
        return self._logs[task]

    def kept_log(self, task: str) -> TaskLog | None:
        """``task``'s log if it was read already (:meth:`log`), else None."""
        return self._logs.get(task)

    def check_samples(self, task: str, visit: Callable[[dict[str, Any]], Any] | None = None) -> None:
        """The per-sample log of ``task`` belongs to these results (see the module docstring) and its
        per-sample values give the stored mean-type metrics (:mod:`mmgpt_eval.agreement`); a one-line
        UserError naming the log otherwise. ``visit``: see :meth:`log` (a reader that needs more of each
        record than the columns gets it from this same read)."""
        tr = self.tasks[task]
        path = self.samples_path(task)
        first = next(iter(iter_jsonl(path)), None)
        if first is None:
            raise UserError("the per-sample log is empty (no header)", path)
        if not is_header(first[1]) or not isinstance(first[1].get(SAMPLES_SCHEMA), dict):
            raise UserError(
                f"the per-sample log has no header line; it does not belong to {self.path or 'these results'}", path
            )
        log = self.log(task, visit)
        header, ids = log.header or {}, log.ids
        if header.get("task") not in (None, task):
            raise UserError(f"the per-sample log is for task {header.get('task')!r}, not {task!r}", path)
        fp, log_fp = tr.fingerprint or "", header.get("fingerprint") or ""
        if fp and log_fp != fp:
            raise UserError(
                f"the per-sample log does not belong to {self.path or 'these results'}: its fingerprint "
                f"{str(log_fp)[:12] or '(none)'} differs from the task's {fp[:12]} (another model, "
                "checkpoint or setting wrote it)",
                path,
            )
        n = tr.n_samples
        if len(ids) < n:
            raise UserError(f"the per-sample log has {len(ids)} records, the results count {n} samples", path)
        if len(set(ids)) != len(ids):
            counts = Counter(ids)
            dup = next(i for i in ids if counts[i] > 1)
            raise UserError(f"the per-sample log repeats sample id {dup!r}", path)
        if len(ids) > n and not (fp and log_fp == fp):
            raise UserError(
                f"the per-sample log has {len(ids)} records, the results count {n} samples (and "
                "no fingerprint to tell which belong to them)",
                path,
            )
        for metric, info in tr.metric_info.items():
            if not isinstance(info, dict) or info.get("kind") not in MEAN_KINDS or metric not in tr.metrics:
                continue
            key = info.get("per_sample")
            if not isinstance(key, str) or key not in log.values:
                continue
            stored, scale = tr.metrics[metric], info.get("scale", 1.0)
            implied = disagreement(stored, log.metric(key, n)[1], scale)  # type: ignore[arg-type]
            if implied is not None:
                raise UserError(
                    f"{task}/{metric}: the results report {stored:g} but the per-sample values of "
                    f"the {n} samples give {implied:.10g} (scale {scale:g}); the results and the log "
                    "disagree beyond the stored precision (an edited file, or a log from another run)",
                    path,
                )
        self._checked.add(task)

    def is_checked(self, task: str) -> bool:
        """Has ``task``'s log passed :meth:`check_samples`?"""
        return task in self._checked

    def samples(self, task: str) -> list[dict[str, Any]]:
        """Per-sample records of a task as dicts (from the samples file next to results.json)."""
        return read_samples(self.samples_path(task))

    def records(self, task: str) -> list[SampleRecord]:
        """Per-sample records of a task, typed."""
        return read_records(self.samples_path(task))


Visitors = Mapping[str, Callable[[dict[str, Any]], Any]]


def check_run(results: RunResults, visitors: Visitors | None = None) -> RunResults:
    """Every task's per-sample log belongs to ``results`` (:meth:`RunResults.check_samples`); returns it.
    ``visitors``: by task, a ``visit`` called with each record of that task's log during its check. A
    task checked already (and given no visitor) is not read again."""
    for task in results.tasks:
        visit = (visitors or {}).get(task)
        if visit is not None or not results.is_checked(task):
            results.check_samples(task, visit)
    return results


def read_run(
    path: str | os.PathLike, visitors: Visitors | Callable[[RunResults], Visitors] | None = None
) -> RunResults:
    """The run at ``path`` (a run folder or its results.json), validated: the one entry point of every
    reader. The results file's schema, version and field types (:meth:`RunResults.load`), then each
    task's log: header fingerprint, distinct ids, counts, per-sample values vs the stored metrics
    (:func:`check_run`); any failure is a one-line UserError naming the file. ``visitors``: as for
    :func:`check_run`, or a function of the loaded results that returns them (a reader that gathers more
    of every record during the check's read)."""
    results = RunResults.load(path)
    return check_run(results, visitors(results) if callable(visitors) else visitors)


#: Metric names a results schema version changed, by task: files of an older version are read under the
#: new names. Version 2 gave the dialog task's headline rates their conversation-level names (version 1
#: used the names of the pooled turn rates). Kept with the schema, so reading a file imports no task.
RENAMED_IN_VERSION_2: dict[str, dict[str, str]] = {
    "dialog": {
        "collapse_rate": "conv_collapse_rate",
        "template_leak_rate": "conv_leak_rate",
        "empty_rate": "conv_empty_rate",
        "truncation_rate": "conv_truncation_rate",
        "eos_rate": "conv_eos_rate",
    },
}


def _apply_metric_renames(tasks: dict[str, "TaskResult"]) -> None:
    """Version-1 results: metrics renamed by version 2 (:data:`RENAMED_IN_VERSION_2`) under their new names."""
    for name, tr in tasks.items():
        renames = RENAMED_IN_VERSION_2.get(name, {})
        if not renames:
            continue
        tr.metrics = {renames.get(k, k): v for k, v in tr.metrics.items()}
        tr.metric_info = {renames.get(k, k): v for k, v in tr.metric_info.items()}
        tr.primary_metric = renames.get(tr.primary_metric, tr.primary_metric)


# --------------------------------------------------------------------------- provenance
_PACKAGES = [
    "mmgpt-eval",
    "torch",
    "torchvision",
    "transformers",
    "tokenizers",
    "peft",
    "open_clip_torch",
    "open-flamingo",
    "safetensors",
    "numpy",
    "scipy",
    "pycocoevalcap",
    "nltk",
    "easy-vqa",
    "pillow",
]


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_info(path: Path | None = None) -> dict[str, Any]:
    root = path or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return {"hash": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"hash": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"hash": None}


def peak_memory() -> dict[str, float | None]:
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, float | None] = {"cpu_rss_mb": round(rss_kb / 1024, 1), "gpu_allocated_mb": None}
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except Exception:  # noqa: BLE001
        pass
    return out


def provenance(wall_time_s: float) -> dict[str, Any]:
    import torch

    return {
        "versions": package_versions(),
        "git": git_info(),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "wall_time_s": round(wall_time_s, 3),
        "peak_memory": peak_memory(),
    }
