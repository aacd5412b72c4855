"""`make bench`: run every benchmark once on this machine and write the measured medians into
RESULTS.md (between markers; nothing typed by hand). Each benchmark also prints its own figures.

    python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run; RESULTS.md untouched)")
    ap.add_argument("--model", default=None, help="model for `bench` (default: the embedded tiny MultiModal-GPT)")
    args = ap.parse_args(argv)
    py = sys.executable
    exe = str(Path(py).parent / "mmgpt-eval")
    from mmgpt_eval.api import EMBEDDED_DEFAULT

    model = args.model or EMBEDDED_DEFAULT["model"]
    ckpt = [] if args.model else (["--ckpt", EMBEDDED_DEFAULT["ckpt"]] if EMBEDDED_DEFAULT.get("ckpt") else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the full easy-VQA test split (9,673 questions about 1,000 images: what `make reproduce` and users
        # evaluate) and the 512-question --limit subset (about one question per image: little feature reuse)
        sizes = {"subset": "64"} if args.quick else {"full": "0", "subset": "512"}
        # a subset pass takes about a second, so its median needs more repeats to settle on a shared machine
        repeats = {"full": "3", "subset": "7"}
        bench_cmds = {}
        for key, n in sizes.items():
            bench_cmds[key] = [exe, "-q", "bench", "--model", model, *ckpt, "--task", "easyvqa", "--limit", n,
                               "--repeats", "1" if args.quick else repeats[key], "--output",
                               str(tmp / f"bench-{key}.json")]
            _run(bench_cmds[key])
        series_cmd = [py, "benchmarks/series_speed.py", "--repeats", "1" if args.quick else "3", "--output",
                      str(tmp / "series.json")]
        _run(series_cmd)
        vqa_cmd = [py, "benchmarks/vqa_scoring_speed.py", "--questions", "20000" if args.quick else "200000",
                   "--repeats", "1" if args.quick else "3", "--output", str(tmp / "vqa.json")]
        _run(vqa_cmd)
        benches = {k: json.loads((tmp / f"bench-{k}.json").read_text()) for k in sizes}
        s = json.loads((tmp / "series.json").read_text())
        v = json.loads((tmp / "vqa.json").read_text())
    import torch

    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
               f"{torch.get_num_threads()} threads, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
    lines = [BEGIN, "## Speed (`make bench`)", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {machine}. Medians of the repeats; the machine is shared, so "
             "only ratios measured in one run are compared.", ""]
    titles = {"full": "the full easy-VQA test split: several questions per image, as evaluated by `make reproduce`",
              "subset": "the 512-question `--limit` subset: about one question per image, so little feature reuse"}
    for key, b in benches.items():
        loops = b["loops"]
        lines += [f"Throughput on {titles[key]}: `{' '.join(['mmgpt-eval'] + bench_cmds[key][2:-2])}` "
                  f"({b['samples']} questions, {b['distinct_images']} distinct images, greedy, max "
                  f"{b['settings']['max_new_tokens']} new tokens, {b['device']} {b['dtype']}, mmgpt-eval batch size "
                  f"{b['batch_size']}):", "",
                  "| loop | median s | samples/s | tokens/s | peak RSS MB |", "|---|---|---|---|---|"]
        for name, r in loops.items():
            lines.append(f"| {name} | {r['median_s']:.3f} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
                         f"{r['peak_memory']['cpu_rss_mb']} |")
        lines += ["", f"- mmgpt-eval vs OpenFlamingo-eval-style loop (batch 8, no feature reuse, no bucketing): "
                      f"**{b['ratio_vs_openflamingo_loop']}x** (target >= 3x)",
                  f"- mmgpt-eval vs per-sample loop (MultiModal-GPT demo style): **{b['ratio_vs_per_sample_loop']}x** "
                  f"(target >= 10x)", f"- identical greedy outputs across the three loops: {b['outputs_identical']}",
                  ""]
    lines += [f"Checkpoint series, `python benchmarks/series_speed.py` ({s['checkpoints']} tiny LoRA checkpoints, "
              f"{s['tasks']}, limit {s['limit']}): one `run --ckpt 'DIR/checkpoint_*.pt'` {s['series_median_s']} s vs "
              f"{s['checkpoints']} separate runs {s['separate_median_s']} s: **{s['ratio']}x** (target >= 3x); "
              f"identical metrics: {s['metrics_identical']}.", "",
              f"VQA scoring, `python benchmarks/vqa_scoring_speed.py` ({v['questions']:,} synthetic questions):"]
    for mode, r in v["modes"].items():
        lines.append(f"- {mode} normalisation: fast {r['fast_median_s']} s vs the official algorithm "
                     f"{r['reference_median_s']} s: **{r['ratio']}x** (target >= 5x); identical numbers: {r['identical']}")
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.quick:
        path = ROOT / "RESULTS.md"
        text = path.read_text()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            text = pre + section.rstrip("\n") + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section
        from mmgpt_eval.io import atomic_write_text

        atomic_write_text(path, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
