"""Checkpoint series vs separate runs: 5 LoRA checkpoints of the tiny model evaluated with one
`mmgpt-eval run --ckpt 'DIR/checkpoint_*.pt'` (base loaded once, adapters swapped) against 5 separate
`mmgpt-eval run --ckpt DIR/checkpoint_N.pt` invocations (each a fresh process). Checks identical
metrics and prints both wall times and the ratio (medians of --repeats), with min-max spread.

Exit code 1 when the series' metrics differ from the separate runs' (the figures are still printed and
written)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def metrics_identical(series_dir: Path, separate_dir: Path, names: list[str]) -> tuple[bool, list[str]]:
    """Every checkpoint's task metrics in the series folder equal to its separate run's; the differing
    ``checkpoint/task`` pairs."""
    diff = []
    for name in names:
        a = json.loads((series_dir / name / "results.json").read_text())["tasks"]
        b = json.loads((separate_dir / name / "results.json").read_text())["tasks"]
        diff += [
            f"{name}/{t}"
            for t in sorted(set(a) | set(b))
            if t not in a or t not in b or a[t]["metrics"] != b[t]["metrics"]
        ]
    return not diff, diff


def main(argv: list[str] | None = None) -> int:
    summary = measure(argv)
    if not summary["metrics_identical"]:
        print(
            f"series_speed: metrics differ between the series and the separate runs: {', '.join(summary['differing'])}",
            file=sys.stderr,
        )
        return 1
    return 0


def measure(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", type=int, default=5)
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--tasks", default="easyvqa,counting")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    from helpers import SETTINGS, tiny_with_random_lora

    from mmgpt_eval.model.export import save_mmgpt_checkpoint

    exe = str(Path(sys.executable).parent / "mmgpt-eval")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.checkpoints):
            m = tiny_with_random_lora(seed=i + 1)
            save_mmgpt_checkpoint(
                m.model, SETTINGS, tmp / f"checkpoint_{(i + 1) * 100}.pt", kind="trainer", step=(i + 1) * 100
            )
        common = [
            "-q",
            "run",
            "--model",
            "tiny",
            "--tasks",
            args.tasks,
            "--limit",
            str(args.limit),
            "--no-progress",
            "--no-report",
            "--batch-size",
            "32",
        ]
        series_t, separate_t = [], []
        for r in range(args.repeats):
            out = tmp / f"series{r}"
            t0 = time.perf_counter()
            subprocess.run(
                [exe, *common, "--ckpt", str(tmp / "checkpoint_*.pt"), "--output-dir", str(out)],
                env=env,
                check=True,
                capture_output=True,
            )
            series_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(args.checkpoints):
                name = f"checkpoint_{(i + 1) * 100}"
                subprocess.run(
                    [exe, *common, "--ckpt", str(tmp / f"{name}.pt"), "--output-dir", str(tmp / f"sep{r}" / name)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
            separate_t.append(time.perf_counter() - t0)
        same, differing = metrics_identical(
            tmp / "series0", tmp / "sep0", [f"checkpoint_{(i + 1) * 100}" for i in range(args.checkpoints)]
        )
    s, d = statistics.median(series_t), statistics.median(separate_t)
    summary = {
        "checkpoints": args.checkpoints,
        "tasks": args.tasks,
        "limit": args.limit,
        "series_s": [round(x, 2) for x in series_t],
        "separate_s": [round(x, 2) for x in separate_t],
        "series_median_s": round(s, 2),
        "separate_median_s": round(d, 2),
        "ratio": round(d / s, 2),
        "ratio_per_round": [round(b / a, 2) for a, b in zip(series_t, separate_t)],
        "target_ratio": 3.0,
        "target_met": d / s >= 3.0,
        "metrics_identical": same,
        "differing": differing,
    }
    print(json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
