"""The automatic batch size (``--batch-size auto``) against batch 8, on the OpenFlamingo benchmark's
configurations: easy-VQA as VQAv2 files and easy-VQA captions as COCO files, 0 and 4 shots, 3 beams
and greedy, the v2 (tiny-openflamingo + tiny-mmgpt) and v1 (test fixture) models, through what
``mmgpt-eval run --protocol openflamingo`` does once the model is loaded (prepare_tasks +
run_evaluation). Every pass starts cold (fresh output folder); the two batch sizes alternate, and the
median of ``--repeats`` passes is reported with auto / b8 (<= 1.0: auto is not slower), and the
ratio's spread over the rounds (each round times both sizes back to back).

    python benchmarks/batch_policy.py [--models v2,v1] [--kinds vqa,caption] [--shots 0,4] [--repeats 3] [--write]

``--write`` rewrites the ``bench-batchpolicy`` section of RESULTS.md (``make bench`` /
``python benchmarks/run_all.py --only batchpolicy`` run it so).

Predictions must be identical between the two batch sizes (printed; exit 1 otherwise). What auto
picks is :func:`mmgpt_eval.model.batching.auto_rows` (a token budget on CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import torch

    from mmgpt_eval.api import load
    from mmgpt_eval_dev.bench_openflamingo import MODELS, Workload, run_mmgpt_path, write_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="v2,v1")
    ap.add_argument("--kinds", default="vqa,caption")
    ap.add_argument("--shots", default="0,4")
    ap.add_argument("--beams", default="3,1", help="3: OpenFlamingo's protocol; 1: greedy")
    ap.add_argument("--vqa-images", type=int, default=25)
    ap.add_argument("--caption-images", type=int, default=40)
    ap.add_argument("--train-images", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="rewrite the bench-batchpolicy section of RESULTS.md")
    a = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="batch-policy-"))
    data = {
        k: write_data(
            tmp / k, k, test_images=a.vqa_images if k == "vqa" else a.caption_images, train_images=a.train_images
        )
        for k in a.kinds.split(",")
    }
    rows = []
    ok = True
    for mk in a.models.split(","):
        loaded = load(**MODELS[mk])
        for kind in a.kinds.split(","):
            for shots in map(int, a.shots.split(",")):
                for beams in map(int, a.beams.split(",")):
                    w = Workload(data[kind], -1, shots, num_beams=beams)
                    run_mmgpt_path(loaded, w, Path(tempfile.mkdtemp(dir=tmp)), 0)  # warm-up
                    times: dict[int, list[float]] = {0: [], 8: []}
                    preds = {}
                    for r in range(a.repeats):
                        for bs in (0, 8) if r % 2 == 0 else (8, 0):
                            t0 = time.perf_counter()
                            preds[bs], _ = run_mmgpt_path(loaded, w, Path(tempfile.mkdtemp(dir=tmp)), bs)
                            times[bs].append(time.perf_counter() - t0)
                    same = preds[0] == preds[8]
                    ok &= same
                    auto, b8 = statistics.median(times[0]), statistics.median(times[8])
                    name = f"{mk}-{kind}{f'-{shots}shot' if shots else ''}{'-greedy' if beams == 1 else ''}"
                    ratios = [x / y for x, y in zip(times[0], times[8])]
                    rows.append((name, b8, auto, min(ratios), max(ratios), same))
                    print(
                        f"{name:28s} b8 {b8:6.2f} s  auto {auto:6.2f} s  auto/b8 {auto / b8:5.2f} "
                        f"(rounds {min(ratios):.2f}-{max(ratios):.2f})  identical {'yes' if same else 'NO'}",
                        flush=True,
                    )
    worst = max(auto / b8 for _, b8, auto, _, _, _ in rows)
    verdict = "auto never slower than batch 8" if worst <= 1.0 else "auto slower somewhere"
    print(f"worst auto/b8: {worst:.2f} ({verdict})")
    if a.write:
        cmd = "python benchmarks/batch_policy.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(rows, cmd.strip(), a, (load_before, os.getloadavg()[0]))
    return 0 if ok else 1


BEGIN, END = "<!-- bench-batchpolicy:begin -->", "<!-- bench-batchpolicy:end -->"


def write_section(rows: list, cmd: str, a: argparse.Namespace, load: tuple[float, float]) -> None:
    """The RESULTS.md section: one row per configuration, met when the median auto / b8 <= 1.0."""
    import platform

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import _write_results

    lines = [
        BEGIN,
        "## Automatic batch size vs batch 8 (`make bench`; `python benchmarks/run_all.py --only batchpolicy`)",
        "",
        f"Command: `{cmd}` ({a.repeats} rounds, each timing both sizes back to back in alternating order; "
        f"{a.threads} torch thread; {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}; "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after). Target: `--batch-size auto` never slower than "
        "batch 8 on the OpenFlamingo bench's configurations (median auto / b8 <= 1.00). Auto on CPU is a token "
        "budget (mmgpt_eval/model/batching.py `auto_rows`).",
        "",
        "| configuration | batch 8 (median s) | auto (median s) | auto / b8 | per-round spread | same predictions "
        "| target |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, b8, auto, lo, hi, same in rows:
        r = auto / b8
        lines.append(
            f"| {name} | {b8:.2f} | {auto:.2f} | {r:.2f} | {lo:.2f}-{hi:.2f} | {'yes' if same else 'NO'} | "
            f"{'met' if r <= 1.0 else 'NOT met'} |"
        )
    met = sum(1 for _, b8, auto, _, _, _ in rows if auto / b8 <= 1.0)
    lines += ["", f"{met} of {len(rows)} configurations met.", END, ""]
    _write_results(BEGIN, END, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
