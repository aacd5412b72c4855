"""The automatic batch size (``--batch-size auto``) against batch 8, on the OpenFlamingo benchmark's
configurations: easy-VQA as VQAv2 files and easy-VQA captions as COCO files, 0 and 4 shots, 3 beams
and greedy, the v2 (tiny-openflamingo + tiny-mmgpt) and v1 (test fixture) models, through what
``mmgpt-eval run --protocol openflamingo`` does once the model is loaded (prepare_tasks +
run_evaluation). Every pass starts cold (fresh output folder); the two batch sizes alternate, and the
median of ``--repeats`` passes is reported with auto / b8 (<= 1.0: auto is not slower).

    python benchmarks/batch_policy.py [--models v2,v1] [--kinds vqa,caption] [--shots 0,4] [--repeats 3]

Predictions must be identical between the two batch sizes (printed; exit 1 otherwise). What auto
picks is :func:`mmgpt_eval.model.batching.auto_rows` (a token budget on CPU).
"""

from __future__ import annotations

import argparse
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
    from mmgpt_eval.bench_openflamingo import MODELS, Workload, run_mmgpt_path, write_data

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
    a = ap.parse_args(argv)
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
                    rows.append((name, b8, auto, same))
                    print(
                        f"{name:28s} b8 {b8:6.2f} s  auto {auto:6.2f} s  auto/b8 {auto / b8:5.2f}  "
                        f"identical {'yes' if same else 'NO'}",
                        flush=True,
                    )
    worst = max(auto / b8 for _, b8, auto, _ in rows)
    verdict = "auto never slower than batch 8" if worst <= 1.0 else "auto slower somewhere"
    print(f"worst auto/b8: {worst:.2f} ({verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
