"""Hand-made run folders (results.json + per-sample logs) for comparison and gate tests."""

from __future__ import annotations

import json
from pathlib import Path

from mmgpt_eval.results import SAMPLES_SCHEMA, RunResults, TaskResult


def make_run(out: Path, per_sample: dict[str, list[float]], *, task: str = "easyvqa", kind: str = "binary",
             scale: float = 100.0, ids: list[str] | None = None, step: int | None = None,
             higher_is_better: bool = True) -> Path:
    """One task whose metrics are the means of the given per-sample values (key = metric name)."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(per_sample.values())))
    ids = ids or [str(i) for i in range(n)]
    records = [{"id": ids[i], "prediction": f"p{i}", "references": ["r"], "images": [], "prompt": "q",
                "metrics": {m: v[i] for m, v in per_sample.items()}} for i in range(n)]
    (out / "samples").mkdir(exist_ok=True)
    with (out / "samples" / f"{task}.jsonl").open("w") as f:
        f.write(json.dumps({SAMPLES_SCHEMA: {"version": 1, "task": task, "fingerprint": "x"}}) + "\n")
        for r in records:
            f.write(json.dumps(r) + "\n")
    metrics = {m: round(scale * sum(v) / len(v), 4) for m, v in per_sample.items()}
    info = {m: {"kind": kind, "higher_is_better": higher_is_better, "scale": scale, "unit": "%", "per_sample": m,
                "description": ""} for m in per_sample}
    tr = TaskResult(task=task, version="1", metrics=metrics, metric_info=info, primary_metric=next(iter(per_sample)),
                    n_samples=n, n_available=n, limit=None, subset="all samples",
                    template={"name": "mmgpt", "sha256": "0" * 64}, generation={}, samples_file=f"samples/{task}.jsonl")
    ck = {"path": f"checkpoint_{step}.pt", "format": "mmgpt-trainer", "metadata": {"step": step}} if step is not None else None
    RunResults(run={"argv": []}, model={"model_spec": {"name": "fake"}, "checkpoint": ck}, tasks={task: tr},
               provenance={}).save(out / "results.json")
    return out
