"""Hand-made run folders (results.json + per-sample logs) for comparison, gate and report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from mmgpt_eval.records import SAMPLES_SCHEMA
from mmgpt_eval.results import RunResults, TaskResult


def make_run(
    out: Path,
    per_sample: dict[str, list[float]],
    *,
    task: str = "easyvqa",
    kind: str = "binary",
    scale: float = 100.0,
    ids: list[str] | None = None,
    step: int | None = None,
    higher_is_better: bool = True,
    breakdown: dict[str, Any] | None = None,
    record: Callable[[int], dict[str, Any]] | None = None,
    checkpoint: dict[str, Any] | None = None,
    label: str | None = None,
) -> Path:
    """One task whose metrics are the means of the given per-sample values (key = metric name).

    ``breakdown``: the task's breakdown; ``record(i)``: fields merged into sample i's record (e.g.
    ``outputs`` and ``references`` of a dialogue; a ``metrics`` dict is merged into its metrics);
    ``checkpoint``: the model's checkpoint entry (default: one with ``step`` when given); ``label``:
    the run's ``--label``."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(per_sample.values())))
    ids = ids or [str(i) for i in range(n)]
    records = []
    for i in range(n):
        r: dict[str, Any] = {
            "id": ids[i],
            "prediction": f"p{i}",
            "references": ["r"],
            "images": [],
            "prompt": "q",
            "metrics": {m: v[i] for m, v in per_sample.items()},
        }
        extra = dict(record(i)) if record is not None else {}
        r["metrics"].update(extra.pop("metrics", {}))
        r.update(extra)
        records.append(r)
    (out / "samples").mkdir(exist_ok=True)
    with (out / "samples" / f"{task}.jsonl").open("w") as f:
        f.write(json.dumps({SAMPLES_SCHEMA: {"version": 1, "task": task, "fingerprint": "x"}}) + "\n")
        for r in records:
            f.write(json.dumps(r) + "\n")
    metrics = {m: round(scale * sum(v) / len(v), 4) for m, v in per_sample.items()}
    info = {
        m: {
            "kind": kind,
            "higher_is_better": higher_is_better,
            "scale": scale,
            "unit": "%",
            "per_sample": m,
            "description": "",
        }
        for m in per_sample
    }
    tr = TaskResult(
        task=task,
        version="1",
        metrics=metrics,
        metric_info=info,
        primary_metric=next(iter(per_sample)),
        n_samples=n,
        n_available=n,
        limit=None,
        subset="all samples",
        template={"name": "mmgpt", "sha256": "0" * 64},
        generation={},
        samples_file=f"samples/{task}.jsonl",
        breakdown=dict(breakdown or {}),
    )
    ck = checkpoint
    if ck is None and step is not None:
        ck = {"path": f"checkpoint_{step}.pt", "format": "mmgpt-trainer", "metadata": {"step": step}}
    run: dict[str, Any] = {"argv": []}
    if label is not None:
        run["label"] = label
    RunResults(run=run, model={"model_spec": {"name": "fake"}, "checkpoint": ck}, tasks={task: tr}, provenance={}).save(
        out / "results.json"
    )
    return out


def task_results_without_timing(out: Path) -> dict:
    """A run folder's results.json tasks without what differs between equal runs (timings, the
    "resumed:" note): what an interrupted-then-resumed run must share with an uninterrupted one."""
    tasks = json.loads((out / "results.json").read_text())["tasks"]
    for t in tasks.values():
        t.pop("timing")
        t["notes"] = [n for n in t["notes"] if not n.startswith("resumed:")]
    return tasks
