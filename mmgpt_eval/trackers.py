"""Send a finished run to experiment trackers (``mmgpt-eval run --log-to mlflow[:URI] --log-to wandb[:PROJECT]``).

One job: after :func:`mmgpt_eval.evaluate` has written ``results.json``, the per-sample logs and the
report, copy them to MLflow and/or Weights & Biases. Nothing here changes the run folder; a tracker
only ever receives what is already on disk.

What each tracker gets, for a run (``RunResults``):

* metrics: every task metric as ``<task>/<metric>`` (numbers only; a metric a task left empty is
  skipped), and with ``--baseline`` the baseline's value and the paired delta as
  ``baseline/<task>/<metric>`` and ``delta/<task>/<metric>``; a judged run (``judge.json`` in its folder,
  :mod:`mmgpt_eval.judge_results`) adds the judge's metrics as ``<task>/judge.<name>`` (a judge.json
  whose logs changed since judging is left out with a warning);
* parameters / config: the run settings, model spec + checkpoint, provenance (package versions, git,
  host) and each task's settings (template, generation, few-shot, options, sample counts), flattened
  to dotted keys (MLflow) or nested (W&B config);
* one table per task from its per-sample log (id, prompt, prediction, raw output, references,
  per-sample metric values...): MLflow ``tables/<task>.json`` (``log_table``), W&B ``<task>/samples``;
* artifacts: ``report.html`` (when written) and ``results.json``.

A checkpoint series (``SeriesResults``) is one tracker run: metric values at steps 0, 1, ... (one per
checkpoint, in series order; the checkpoint's own training step as the ``checkpoint_step`` metric),
tables per checkpoint and the series report.

Targets: ``mlflow`` (tracking URI from ``MLFLOW_TRACKING_URI`` or MLflow's default), ``mlflow:URI``
(``file:/path``, a plain folder, ``http(s)://server``, ``databricks``...), ``wandb`` (project from
``WANDB_PROJECT``, else ``mmgpt-eval``; mode, entity and folder from W&B's own environment variables,
e.g. ``WANDB_MODE=offline``), ``wandb:PROJECT``. MLflow's experiment is ``MLFLOW_EXPERIMENT_NAME`` or
``mmgpt-eval``. MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; asking for a
file store explicitly (``mlflow:file:...``, a folder, or ``MLFLOW_TRACKING_URI`` naming one) sets that
for these MLflow calls only.

:func:`parse_targets` + :func:`check_targets` run before any model loads (missing optional package ->
one-line :class:`UserError`); :func:`log_to_trackers` runs on rank 0 once everything is written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import UserError
from .numbers import number

log = logging.getLogger("mmgpt_eval")

KINDS = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}  # kind -> (module, extra)
DEFAULT_PROJECT = "mmgpt-eval"


@dataclass(frozen=True)
class Target:
    """One tracker to log to: ``kind`` (mlflow / wandb) and its location (MLflow tracking URI or W&B
    project; None: the tracker's own default)."""

    kind: str
    where: str | None = None

    def __str__(self) -> str:
        return self.kind + (f":{self.where}" if self.where else "")


# ------------------------------------------------------------------------------------------ parsing
def parse_targets(values: str | Sequence[str] | None) -> list[Target]:
    """``--log-to`` values (repeatable, each comma-separated) -> targets, in order, duplicates dropped.
    A comma inside a URI is kept: a piece that does not start with a tracker name continues the one before."""
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    pieces: list[str] = []
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            head = part.strip().split(":", 1)[0].lower()
            if pieces and head not in KINDS:
                pieces[-1] += "," + part
            else:
                pieces.append(part.strip())
    out: list[Target] = []
    for p in pieces:
        kind, _, where = p.partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise UserError(f"--log-to {p!r}: unknown tracker {kind!r} (choose mlflow[:URI] or wandb[:PROJECT])")
        t = Target(kind, where.strip() or None)
        if t.kind == "mlflow" and t.where:
            t = Target("mlflow", _mlflow_uri(t.where))
        if t not in out:
            out.append(t)
    return out


def _mlflow_uri(where: str) -> str:
    """A plain folder or a relative ``file:`` URI -> an absolute ``file:`` URI (so the store does not depend
    on the working directory at logging time); other URIs unchanged."""
    if where.startswith("file:"):
        rest = where[len("file:") :]
        if rest.startswith("//"):  # file:///abs or file://host/...
            return where
        return Path(rest).expanduser().resolve().as_uri()
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", where) and not re.match(r"^[A-Za-z]:[\\/]", where):
        return where  # http:, https:, databricks:, sqlite:, postgresql:...
    return Path(where).expanduser().resolve().as_uri()


def check_targets(targets: Sequence[Target]) -> None:
    """Fail early (before any model loads) when a tracker's optional package is missing, or MLflow
    cannot open the tracking store."""
    for t in targets:
        module, extra = KINDS[t.kind]
        if not _installed(module):
            raise UserError(
                f"--log-to {t.kind} needs the optional package {module!r}: pip install 'mmgpt-eval[{extra}]'"
            )
    for t in targets:
        if t.kind == "mlflow":
            _mlflow_client(t)  # opens (and for a file store creates) the store; errors are one line


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None (import blocked)
        return False


# ------------------------------------------------------------------------------------------ shared
def log_to_trackers(targets: Sequence[Target], results: Any, out_dir: str | os.PathLike) -> None:
    """Send ``results`` (a RunResults or SeriesResults, already written under ``out_dir``) to every target.
    Each target is tried; failures are collected and raised together as one UserError (the results
    on disk are complete either way)."""
    if not targets:
        return
    payload = _Payload.of(results, Path(out_dir))
    failed = []
    for t in targets:
        try:
            where = _mlflow_log(t, payload) if t.kind == "mlflow" else _wandb_log(t, payload)
            log.info("logged to %s: %s", t.kind, where)
        except UserError as e:
            failed.append(f"{t}: {e}")
        except Exception as e:  # a tracker's own error (logged with its traceback), reported in one line
            log.debug("tracker %s failed", t, exc_info=True)
            failed.append(f"{t}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if failed:
        raise UserError(
            f"logging to experiment trackers failed ({'; '.join(failed)}); the results are complete in {out_dir}"
        )


@dataclass
class _Step:
    """One evaluated run as trackers see it: metric values, tables, and the name it goes by."""

    name: str
    metrics: dict[str, float]
    tables: dict[str, tuple[list[str], list[list[Any]]]]  # task -> (columns, rows)


@dataclass
class _Payload:
    label: str
    params: dict[str, Any]  # nested
    steps: list[_Step]
    step_values: list[float | None]  # the checkpoint's training step per step (series), else [None]
    artifacts: list[Path]
    tags: dict[str, str]

    @classmethod
    def of(cls, results: Any, out_dir: Path) -> "_Payload":
        from .compare import run_label
        from .version import __version__

        runs = list(getattr(results, "runs", None) or [results])
        entries = list(getattr(results, "entries", None) or [])
        first = runs[0]
        series = bool(entries)
        label = (first.run or {}).get("label") if series else run_label(first)
        label = str(label or out_dir.resolve().name)
        params = {
            "run": first.run,
            "model": _model_params(first.model),
            "provenance": first.provenance,
            "tasks": {name: _task_params(tr) for name, tr in first.tasks.items()},
        }
        if series:
            params["series"] = {"checkpoints": [e.get("checkpoint") for e in entries]}
        steps = [
            _Step(name=(entries[i]["name"] if series else label), metrics=_run_metrics(r), tables=_run_tables(r))
            for i, r in enumerate(runs)
        ]
        step_values = [e.get("step") for e in entries] if series else [None]
        artifacts = [
            p
            for p in (out_dir / "report.html", getattr(results, "path", None) or out_dir / "results.json")
            if p is not None and Path(p).is_file()
        ]
        tags = {
            "mmgpt_eval.version": __version__,
            "mmgpt_eval.output_dir": str(out_dir.resolve()),
            "mmgpt_eval.kind": "series" if series else "run",
        }
        return cls(
            label=label,
            params=params,
            steps=steps,
            step_values=step_values,
            artifacts=[Path(a) for a in artifacts],
            tags=tags,
        )


def _model_params(model: dict[str, Any]) -> dict[str, Any]:
    """The model section without the bulky load reports (they stay in results.json)."""
    return {k: v for k, v in (model or {}).items() if k != "load_reports"}


def _task_params(tr: Any) -> dict[str, Any]:
    return {
        "version": tr.version,
        "template": tr.template,
        "generation": tr.generation,
        "num_fewshot": tr.num_fewshot,
        "fewshot_mode": tr.fewshot_mode,
        "options": tr.options,
        "n_samples": tr.n_samples,
        "n_available": tr.n_available,
        "limit": tr.limit,
        "subset": tr.subset,
        "primary_metric": tr.primary_metric,
        "fingerprint": tr.fingerprint,
    }


def _run_metrics(r: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for task, tr in r.tasks.items():
        for m, v in (tr.metrics or {}).items():
            if number(v) is not None:
                out[f"{task}/{m}"] = float(v)
    for c in (r.baseline or {}).get("comparisons", []) if isinstance(r.baseline, dict) else []:
        for key, prefix in (("baseline", "baseline"), ("delta", "delta")):
            if number(c.get(key)) is not None:
                out[f"{prefix}/{c.get('task')}/{c.get('metric')}"] = float(c[key])
    out.update(_judge_metrics(r))
    return out


def _judge_metrics(r: Any) -> dict[str, float]:
    """The judge's metrics of a judged run as ``<task>/judge.<name>``; none for an unjudged or stale one."""
    from .judge_results import read_judge

    folder = getattr(r, "run_dir", None)
    if folder is None:
        return {}
    try:
        j = read_judge(folder)
    except UserError as e:
        log.warning("judge metrics not logged: %s", e)
        return {}
    if j is None:
        return {}
    return {f"{t}/judge.{m}": float(v) for t, tj in j.tasks.items() for m, v in tj.metrics.items() if v is not None}


_BASE_COLUMNS = ("id", "prompt", "images", "prediction", "raw", "references", "generated_tokens", "stopped_on_eos")


def _cell(v: Any) -> Any:
    """A table cell: numbers, text and booleans as they are, anything else as compact JSON."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


def _run_tables(r: Any) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Per task: the per-sample log as columns + rows (the task's first ``n_samples`` records, which is
    what its metrics were computed on; older extra records a resumed run keeps are left out)."""
    out = {}
    for task, tr in r.tasks.items():
        records = r.records(task)[: tr.n_samples]
        metric_keys: list[str] = []
        for rec in records:
            metric_keys += [k for k in rec.metrics if k not in metric_keys]
        multi = any(rec.outputs for rec in records)
        cols = list(_BASE_COLUMNS) + [f"metric.{k}" for k in metric_keys] + (["outputs"] if multi else [])
        rows = []
        for rec in records:
            row = [_cell(getattr(rec, c)) for c in _BASE_COLUMNS]
            row += [_cell(rec.metrics.get(k)) for k in metric_keys]
            if multi:
                row.append(_cell(rec.outputs))
            rows.append(row)
        out[task] = (cols, rows)
    return out


def _flatten(d: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif prefix:
        yield prefix, d


# ------------------------------------------------------------------------------------------ MLflow
_MLFLOW_KEY_BAD = re.compile(r"[^/\w.\- ]")


def _mlflow_key(k: str) -> str:
    k = _MLFLOW_KEY_BAD.sub("_", k)
    k = re.sub(r"/+", "/", k).strip("/") or "_"
    return "/".join(p if p not in (".", "..") else "_" for p in k.split("/"))[:250]


@contextlib.contextmanager
def _file_store_allowed(t: Target) -> Iterator[None]:
    """MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true: asking for one explicitly (``--log-to
    mlflow:file:...`` / a folder, or ``MLFLOW_TRACKING_URI`` naming one) allows it for these calls."""
    uri = t.where or os.environ.get("MLFLOW_TRACKING_URI") or ""
    explicit = uri.startswith("file:") or (bool(uri) and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri))
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if explicit and old is None:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if explicit and old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def _mlflow_client(t: Target):
    from mlflow.tracking import MlflowClient

    with _file_store_allowed(t):
        try:
            return MlflowClient(tracking_uri=t.where) if t.where else MlflowClient()
        except Exception as e:  # noqa: BLE001 - MLflow's store errors are long; one line
            import mlflow

            uri = t.where or mlflow.get_tracking_uri()
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"--log-to {t}: MLflow cannot open the tracking store {uri} ({msg[:300]}); "
                "give a store, e.g. --log-to mlflow:file:./mlruns or mlflow:http://host:5000"
            ) from None


def _mlflow_log(t: Target, p: _Payload) -> str:
    from mlflow.entities import Metric, Param

    with _file_store_allowed(t):
        client = _mlflow_client(t)
        exp_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        exp = client.get_experiment_by_name(exp_name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(exp_name)
        run = client.create_run(exp_id, run_name=p.label, tags=p.tags)
        rid = run.info.run_id
        status = "FAILED"
        try:
            params, seen = [], set()
            for k, v in _flatten(p.params):
                key = _mlflow_key(k)
                if key in seen:
                    continue
                seen.add(key)
                text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
                params.append(Param(key, text[:6000]))
            for i in range(0, len(params), 100):
                client.log_batch(rid, params=params[i : i + 100])
            now = int(time.time() * 1000)
            metrics = []
            for step, (s, ck_step) in enumerate(zip(p.steps, p.step_values)):
                metrics += [Metric(_mlflow_key(k), v, now, step) for k, v in s.metrics.items()]
                if (ck := number(ck_step)) is not None:
                    metrics.append(Metric("checkpoint_step", ck, now, step))
            for i in range(0, len(metrics), 1000):
                client.log_batch(rid, metrics=metrics[i : i + 1000])
            series = len(p.steps) > 1 or p.step_values != [None]
            for s in p.steps:
                for task, (cols, rows) in s.tables.items():
                    name = f"tables/{s.name}/{task}.json" if series else f"tables/{task}.json"
                    client.log_table(
                        rid, data={c: [row[i] for row in rows] for i, c in enumerate(cols)}, artifact_file=name
                    )
            for a in p.artifacts:
                client.log_artifact(rid, str(a))
            client.set_tag(rid, "mlflow.note.content", f"mmgpt-eval run {p.label}")
            status = "FINISHED"
        finally:
            client.set_terminated(rid, status=status)
        import mlflow

        return f"{t.where or mlflow.get_tracking_uri()} experiment {exp_name!r} run {rid}"


# ------------------------------------------------------------------------------------------ W&B
def _wandb_log(t: Target, p: _Payload) -> str:
    import wandb

    project = t.where or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
    config = json.loads(json.dumps(p.params, default=str))
    with wandb.init(
        project=project,
        name=p.label,
        config=config,
        job_type="eval",
        tags=[p.tags["mmgpt_eval.kind"]],
        reinit="create_new",
    ) as run:
        series = len(p.steps) > 1 or p.step_values != [None]
        for step, (s, ck_step) in enumerate(zip(p.steps, p.step_values)):
            data: dict[str, Any] = dict(s.metrics)
            if (ck := number(ck_step)) is not None:
                data["checkpoint_step"] = ck
            for task, (cols, rows) in s.tables.items():
                data[f"{task}/samples"] = wandb.Table(columns=cols, data=rows)
            run.log(data, step=step)
        if not series:
            run.summary.update(p.steps[0].metrics)
        run.summary.update({"mmgpt_eval/output_dir": p.tags["mmgpt_eval.output_dir"]})
        if p.artifacts:
            art = wandb.Artifact(
                _wandb_name(f"mmgpt-eval-{p.label}"),
                type="mmgpt-eval-report",
                metadata={"output_dir": p.tags["mmgpt_eval.output_dir"]},
            )
            for a in p.artifacts:
                art.add_file(str(a), name=a.name)
            run.log_artifact(art)
        return f"project {project} run {run.id}"


def _wandb_name(s: str) -> str:
    """W&B artifact names: alphanumerics, dashes, underscores and dots."""
    return re.sub(r"[^\w.-]", "_", s)[:128]


__all__ = ["Target", "parse_targets", "check_targets", "log_to_trackers"]
