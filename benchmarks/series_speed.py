"""Checkpoint series vs separate runs: 5 LoRA checkpoints of the tiny model evaluated with one
`mmgpt-eval run --ckpt 'DIR/checkpoint_*.pt'` (base loaded once, adapters swapped) against 5 separate
`mmgpt-eval run --ckpt DIR/checkpoint_N.pt` invocations (each a fresh process). Checks identical
metrics and prints both wall times and the ratio (medians of --repeats)."""

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


def main(argv: list[str] | None = None) -> dict:
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
            save_mmgpt_checkpoint(m.model, SETTINGS, tmp / f"checkpoint_{(i + 1) * 100}.pt", kind="trainer",
                                  step=(i + 1) * 100)
        common = ["-q", "run", "--model", "tiny", "--tasks", args.tasks, "--limit", str(args.limit), "--no-progress",
                  "--no-report", "--batch-size", "32"]
        series_t, separate_t = [], []
        for r in range(args.repeats):
            out = tmp / f"series{r}"
            t0 = time.perf_counter()
            subprocess.run([exe, *common, "--ckpt", str(tmp / "checkpoint_*.pt"), "--output-dir", str(out)], env=env,
                           check=True, capture_output=True)
            series_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(args.checkpoints):
                name = f"checkpoint_{(i + 1) * 100}"
                subprocess.run([exe, *common, "--ckpt", str(tmp / f"{name}.pt"), "--output-dir",
                                str(tmp / f"sep{r}" / name)], env=env, check=True, capture_output=True)
            separate_t.append(time.perf_counter() - t0)
        same = True
        for i in range(args.checkpoints):
            name = f"checkpoint_{(i + 1) * 100}"
            a = json.loads((tmp / "series0" / name / "results.json").read_text())["tasks"]
            b = json.loads((tmp / "sep0" / name / "results.json").read_text())["tasks"]
            same &= all(a[t]["metrics"] == b[t]["metrics"] for t in a)
    s, d = statistics.median(series_t), statistics.median(separate_t)
    summary = {"checkpoints": args.checkpoints, "tasks": args.tasks, "limit": args.limit,
               "series_s": [round(x, 2) for x in series_t], "separate_s": [round(x, 2) for x in separate_t],
               "series_median_s": round(s, 2), "separate_median_s": round(d, 2), "ratio": round(d / s, 2),
               "metrics_identical": same}
    print(json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
