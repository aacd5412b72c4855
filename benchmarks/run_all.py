"""`make bench`: run every benchmark once on this machine and write the measured medians into
RESULTS.md (between markers; nothing typed by hand). Each benchmark also prints its own figures.

    python benchmarks/run_all.py [--quick] [--only generation|ranking|openflamingo|runfolders|batchpolicy|startup|serve]

``--only runfolders`` runs benchmarks/run_folders_scale.py alone (compare, report, gate, export, score and
resume on run folders of 10k to 214k samples: time and peak memory) and rewrites only its section.
``--only ranking`` runs the ranking benchmark alone (``mmgpt-eval bench --ranking``: OpenFlamingo's
ImageNet classification loop vs mmgpt-eval's Ranker) and rewrites only its section.
``--only openflamingo`` runs ``mmgpt-eval bench --openflamingo`` alone (OpenFlamingo's own
``evaluate_vqa`` / ``evaluate_captioning`` vs the runner vs a per-sample loop, v1 and v2) and rewrites only
its section. ``--only generation`` runs the first section's benchmarks alone (the look-alike loops on
the easy-VQA split and subset, the checkpoint series, VQA scoring). ``--only batchpolicy`` runs
benchmarks/batch_policy.py alone (``--batch-size auto`` against batch 8) and rewrites only its section.
``--only startup`` runs benchmarks/startup.py alone (start-up of ``--version``, ``tasks``, ``data check``,
``compare``, ``gate``, ``report`` and ``export`` on two stored runs, each in a fresh process) and rewrites only
its section.
``--only serve`` runs benchmarks/serve_throughput.py alone (``mmgpt-eval serve`` at 1 and 8 concurrent
clients against in-process predict) and rewrites only its section.

Every target is printed with "met" / "NOT met"; the exit code is non-zero when any benchmark's outputs
differ between its paths (the sections are written all the same, saying so).
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
RANK_BEGIN, RANK_END = "<!-- bench-ranking:begin -->", "<!-- bench-ranking:end -->"
# the ranking workload: OpenFlamingo's ImageNet evaluation (1000 class names) after 32 images. One torch
# thread: the OpenFlamingo loop is thousands of tiny forwards, and with two threads on a shared 2-core
# machine their thread hand-offs made the same pass take 1 s or 15 s from one run to the next.
RANKING = {"limit": "32", "repeats": "3", "threads": "1"}
RANKING_QUICK = {"limit": "8", "repeats": "1", "threads": "1", "classes": "100"}
OF_BEGIN, OF_END = "<!-- bench-openflamingo:begin -->", "<!-- bench-openflamingo:end -->"
# OpenFlamingo's own eval loop: easy-VQA as VQAv2 / COCO-Karpathy files, v2 and v1 tiny models, 3 rounds.
# One torch thread, for the reason above.
OPENFLAMINGO = {
    "vqa-images": "25",
    "caption-images": "40",
    "train-images": "30",
    "num-shots": "0,4",
    "of-beams": "3,1",
    "repeats": "3",
    "threads": "1",
}
OPENFLAMINGO_QUICK = {
    "vqa-images": "4",
    "caption-images": "8",
    "train-images": "8",
    "num-shots": "0,2",
    "of-beams": "3,1",
    "repeats": "1",
    "threads": "1",
    "no-memory": None,
}


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _spread(seconds: list[float]) -> str:
    return f"{min(seconds):.3f}-{max(seconds):.3f}"


def _run(cmd: list[str], check: bool = True) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=check, env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode


def _machine() -> str:
    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )


def _replace_section(text: str, begin: str, end: str, section: str, after: str | None = None) -> str:
    """``section`` (markers included) in place of the text between ``begin`` and ``end``; if absent, at the
    end of the section that ends with ``after`` (before the next ``## `` heading or marker), else at the end."""
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        return pre + section.rstrip("\n") + rest.split(end, 1)[1]
    if after and after in text:
        pre, rest = text.split(after, 1)
        cut = [i for i in (rest.find("\n## "), rest.find("\n<!-- ")) if i >= 0]
        if cut:
            i = min(cut)
            return pre + after + rest[:i].rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n" + rest[i:]
    return text.rstrip("\n") + "\n\n" + section


def _write_results(begin: str, end: str, section: str, after: str | None = None) -> None:
    from mmgpt_eval.io import atomic_write_text

    path = ROOT / "RESULTS.md"
    atomic_write_text(path, _replace_section(path.read_text(), begin, end, section, after))


def _sci(x: float) -> str:
    return format(x, ".0e").replace("e-0", "e-")  # 0.0001 -> 1e-4


def ranking_section(r: dict, cmd: list[str], machine: str) -> str:
    """The RESULTS.md section of one ``mmgpt-eval bench --ranking`` run (its JSON figures ``r``)."""
    loops = r["loops"]
    of, b8, auto = loops["openflamingo-rank"], loops["mmgpt-eval-rank-b8"], loops["mmgpt-eval-rank-auto"]
    pr = r["paired_ratios"]
    up = r.get("upstream_mask")
    what = {
        "openflamingo-rank": "OpenFlamingo's loop: `get_rank_classifications(use_cache=True)`, "
        "class-name tokens one at a time against the cached context",
        "mmgpt-eval-rank-b8": "mmgpt-eval `Ranker`, the same batch size",
        "mmgpt-eval-rank-auto": "mmgpt-eval `Ranker`, `--batch-size auto`",
    }
    lines = [
        RANK_BEGIN,
        "## Ranking speed (`make bench`; `python benchmarks/run_all.py --only ranking`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}, {r['torch_threads']} torch thread"
        f"{'s' if r['torch_threads'] != 1 else ''}: `{' '.join(['mmgpt-eval'] + cmd[2:-2])}`. "
        f"OpenFlamingo's ImageNet 0-shot classification workload: {r['images']} distinct easy-VQA test images, "
        f"each ranked against {r['classes']} ImageNet class names ({r['class_tokens']} class-name tokens) by "
        f"mean log-probability per token; prompt `of-imagenet` with 2 text-only demos (class names drawn with "
        f"seed {r['seed']}), their images passed as OpenFlamingo passes them ({r['images_per_context']} images "
        f"per context); {r['padded_contexts_at_batch_8']} of the {r['images']} contexts left-padded in "
        f"batches of 8; {r['device']} {r['dtype']}. Medians of {r['repeats']} rounds (the loops interleaved "
        f"in each round, every pass cold) after a warm-up; min-max over the rounds.".replace(
            "Medians of 1 rounds", "One round"
        ),
        "",
        "| loop | batch | median s | min-max s | images/s | (image, class) scores/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, x in loops.items():
        lines.append(
            f"| {name} ({what.get(name, name)}) | {x['batch_size']} | {x['median_s']:.2f} | "
            f"{x['min_s']:.2f}-{x['max_s']:.2f} | {x['images_per_s']:.2f} | {x['scores_per_s']:.0f} |"
        )
    verdict = "met" if r["target_met"] else "NOT met"
    lines += [
        "",
        f"- mmgpt-eval (batch {auto['batch_size']}, auto) vs OpenFlamingo's loop (batch {of['batch_size']}): "
        f"**{r['ratio_vs_openflamingo_rank']}x** (per round {min(pr['auto'])}-{max(pr['auto'])}x); target >= "
        f"{r['target_ratio']:g}x: {verdict}",
        f"- at the same batch size ({b8['batch_size']}): **{r['ratio_vs_openflamingo_rank_matched_batch']}x** "
        f"(per round {min(pr['matched_batch'])}-{max(pr['matched_batch'])}x)",
        f"- identical outputs (top-5 class order of every image identical and every log-prob within "
        f"{_sci(r['tolerance'])}): {'yes' if r['outputs_identical'] else 'NO'}; top-5 identical: "
        f"{'yes' if r['ranks_identical'] else 'no'}; max |log-prob difference| "
        f"{r['max_abs_logprob_diff']:.1e}",
    ]
    if up:
        lines.append(
            f"- for information (not timed): OpenFlamingo's own `attention_mask=None` for the cached "
            f"class-name tokens gives a different top-5 on {up['images_with_different_top5']} of "
            f"{r['images']} images (max |log-prob difference| {up['max_abs_logprob_diff']:.2g}); the loop "
            f"timed above uses the correct mask"
        )
    lines.append(RANK_END)
    return "\n".join(lines) + "\n"


def run_runfolders(py: str, quick: bool) -> int:
    """Run folders at VQAv2 scale (benchmarks/run_folders_scale.py writes its own RESULTS.md section)."""
    return _run([py, str(ROOT / "benchmarks" / "run_folders_scale.py"), *(["--quick"] if quick else [])], check=False)


def run_batch_policy(py: str, quick: bool) -> int:
    """``--batch-size auto`` against batch 8 (benchmarks/batch_policy.py writes its own RESULTS.md section)."""
    args = ["--models", "v2", "--kinds", "vqa", "--repeats", "1"] if quick else ["--write"]
    return _run([py, str(ROOT / "benchmarks" / "batch_policy.py"), *args], check=False)


def run_startup(py: str, quick: bool) -> int:
    """Start-up of the commands that run no model (benchmarks/startup.py writes its own RESULTS.md section)."""
    return _run(
        [py, str(ROOT / "benchmarks" / "startup.py"), *(["--repeats", "2", "--no-write"] if quick else [])], check=False
    )


def run_serve(py: str, quick: bool) -> int:
    """``mmgpt-eval serve`` throughput (benchmarks/serve_throughput.py writes its own RESULTS.md section)."""
    args = ["--cases", "16", "--repeats", "1"] if quick else ["--write"]
    return _run([py, str(ROOT / "benchmarks" / "serve_throughput.py"), *args], check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run; RESULTS.md untouched)")
    ap.add_argument("--model", default=None, help="model for `bench` (default: the embedded tiny MultiModal-GPT)")
    ap.add_argument(
        "--only",
        choices=["generation", "ranking", "openflamingo", "runfolders", "batchpolicy", "startup", "serve"],
        default=None,
        help="run only this benchmark and rewrite only its RESULTS.md section",
    )
    args = ap.parse_args(argv)
    py = sys.executable
    exe = str(Path(py).parent / "mmgpt-eval")
    from mmgpt_eval.api import EMBEDDED_DEFAULT

    model = args.model or EMBEDDED_DEFAULT["model"]
    ckpt = [] if args.model else (["--ckpt", EMBEDDED_DEFAULT["ckpt"]] if EMBEDDED_DEFAULT.get("ckpt") else [])
    if args.only == "openflamingo":
        return run_openflamingo(exe, args.quick)
    if args.only == "runfolders":
        return run_runfolders(py, args.quick)
    if args.only == "batchpolicy":
        return run_batch_policy(py, args.quick)
    if args.only == "startup":
        return run_startup(py, args.quick)
    if args.only == "serve":
        return run_serve(py, args.quick)
    rc = 0
    if args.only != "generation":
        if args.only is None:  # first: before the other benchmarks leave the machine busy
            rc = run_startup(py, args.quick)
        rc = max(rc, run_ranking(exe, model, ckpt, args.quick))
        if args.only == "ranking":
            return rc
        rc = max(rc, run_runfolders(py, args.quick))
        rc = max(rc, run_batch_policy(py, args.quick))
        rc = max(rc, run_serve(py, args.quick))
        rc = max(rc, run_openflamingo(exe, args.quick))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the full easy-VQA test split (9,673 questions about 1,000 images: what `make reproduce` and users
        # evaluate) and the 512-question --limit subset (about one question per image: little feature reuse)
        sizes = {"subset": "64"} if args.quick else {"full": "0", "subset": "512"}
        # a subset pass takes about a second, so its median needs more repeats to settle on a shared machine
        repeats = {"full": "3", "subset": "7"}
        bench_cmds = {}
        for key, n in sizes.items():
            bench_cmds[key] = [
                exe,
                "-q",
                "bench",
                "--model",
                model,
                *ckpt,
                "--task",
                "easyvqa",
                "--limit",
                n,
                "--repeats",
                "1" if args.quick else repeats[key],
                "--skip-openflamingo",
                "--output",
                str(tmp / f"bench-{key}.json"),
            ]
            rc = max(rc, _run(bench_cmds[key], check=False))
        series_cmd = [
            py,
            "benchmarks/series_speed.py",
            "--repeats",
            "1" if args.quick else "3",
            "--output",
            str(tmp / "series.json"),
        ]
        rc = max(rc, _run(series_cmd, check=False))
        vqa_cmd = [
            py,
            "benchmarks/vqa_scoring_speed.py",
            "--questions",
            "20000" if args.quick else "200000",
            "--repeats",
            "1" if args.quick else "3",
            "--output",
            str(tmp / "vqa.json"),
        ]
        _run(vqa_cmd)
        benches = {k: json.loads((tmp / f"bench-{k}.json").read_text()) for k in sizes}
        s = json.loads((tmp / "series.json").read_text())
        v = json.loads((tmp / "vqa.json").read_text())
    import torch

    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )
    lines = [
        BEGIN,
        "## Speed (`make bench`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}. Medians of the repeats; the machine is shared, so "
        "only ratios measured in one run are compared.",
        "",
    ]
    titles = {
        "full": "the full easy-VQA test split: several questions per image, as evaluated by `make reproduce`",
        "subset": "the 512-question `--limit` subset: about one question per image, so little feature reuse",
    }
    for key, b in benches.items():
        loops = b["loops"]
        lines += [
            f"Throughput on {titles[key]}: `{' '.join(['mmgpt-eval'] + bench_cmds[key][2:-2])}` "
            f"({b['samples']} questions, {b['distinct_images']} distinct images, greedy, max "
            f"{b['settings']['max_new_tokens']} new tokens, {b['device']} {b['dtype']}, mmgpt-eval batch size "
            f"{b['batch_size']}):",
            "",
            "| loop | median s | min-max s | samples/s | tokens/s |",
            "|---|---|---|---|---|",
        ]
        for name, r in loops.items():
            lines.append(
                f"| {name} | {r['median_s']:.3f} | {_spread(r['seconds'])} | {r['samples_per_s']:.1f} | "
                f"{r['tokens_per_s']:.0f} |"
            )
        of_r, ps_r = b["ratio_vs_openflamingo_loop"], b["ratio_vs_per_sample_loop"]
        lines += [
            "",
            f"- mmgpt-eval vs OpenFlamingo-eval-style loop (a look-alike written here: batch 8, no "
            f"feature reuse, no bucketing; OpenFlamingo's own loop is measured in the section below): "
            f"**{of_r}x** (target >= 3x: {_verdict(of_r >= 3)})",
            f"- mmgpt-eval vs per-sample loop (MultiModal-GPT demo style): **{ps_r}x** "
            f"(target >= 10x: {_verdict(ps_r >= 10)})",
            f"- identical greedy outputs across the three loops: {b['outputs_identical']}",
            f"- memory: the three loops run in one process, so no per-loop peak is given here (the process "
            f"peak RSS was {next(iter(loops.values()))['peak_memory']['cpu_rss_mb']} MB); per-path peaks are "
            f"measured in fresh processes in the OpenFlamingo section below",
            "",
        ]
    lines += [
        f"Checkpoint series, `python benchmarks/series_speed.py` ({s['checkpoints']} tiny LoRA checkpoints, "
        f"{s['tasks']}, limit {s['limit']}): one `run --ckpt 'DIR/checkpoint_*.pt'` {s['series_median_s']} s vs "
        f"{s['checkpoints']} separate runs {s['separate_median_s']} s (series min-max {_spread(s['series_s'])} s, "
        f"separate {_spread(s['separate_s'])} s): **{s['ratio']}x** (target >= 3x: {_verdict(s['ratio'] >= 3)}); "
        f"identical metrics: {s['metrics_identical']}.",
        "",
        f"VQA scoring, `python benchmarks/vqa_scoring_speed.py` ({v['questions']:,} synthetic questions):",
    ]
    for mode, r in v["modes"].items():
        lines.append(
            f"- {mode} normalisation: fast {r['fast_median_s']} s vs the official algorithm "
            f"{r['reference_median_s']} s: **{r['ratio']}x** (target >= 5x: {_verdict(r['ratio'] >= 5)}); "
            f"identical numbers: {r['identical']}"
        )
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.quick:
        _write_results(BEGIN, END, section)
    return rc


def run_ranking(exe: str, model: str, ckpt: list[str], quick: bool) -> int:
    """``mmgpt-eval bench --ranking``; its section of RESULTS.md (unless ``quick``). Returns the bench's
    exit code (1: the two paths' outputs differ -- the section is written all the same, saying so)."""
    sizes = RANKING_QUICK if quick else RANKING
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench-ranking.json"
        cmd = [
            exe,
            "-q",
            "bench",
            "--ranking",
            "--model",
            model,
            *ckpt,
            *[x for k, v in sizes.items() for x in (f"--{k}", v)],
            "--output",
            str(out),
        ]
        rc = _run(cmd, check=False)
        if not out.exists():
            raise SystemExit(f"bench --ranking failed (exit code {rc}) without writing its figures")
        r = json.loads(out.read_text())
    section = ranking_section(r, cmd, _machine())
    print(section)
    if not quick:
        _write_results(RANK_BEGIN, RANK_END, section, after=END)
    return rc


OF_WHAT = {
    "openflamingo-eval": "OpenFlamingo's own `evaluate_vqa` / `evaluate_captioning` (open-flamingo wheel), batch 8",
    "mmgpt-eval-b8": "`mmgpt-eval run --protocol openflamingo` work (prepare_tasks + run_evaluation), batch 8",
    "mmgpt-eval-auto": "the same, `--batch-size auto`",
    "per-sample-loop": "per-sample (demo style): OpenFlamingo's loop at batch 1",
}


def openflamingo_section(s: dict, cmd: list[str], machine: str, load: str) -> str:
    """The RESULTS.md section of one ``mmgpt-eval bench --openflamingo`` run (its JSON figures ``s``)."""
    lines = [
        OF_BEGIN,
        "## Speed against OpenFlamingo's own evaluation loop (`make bench`; "
        "`python benchmarks/run_all.py --only openflamingo`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine}, {s['torch_threads']} torch thread(s), "
        f"load average before the run {load}: `{' '.join(['mmgpt-eval'] + cmd[2:-2])}`. "
        f"OpenFlamingo's protocol (its prompts, seeded subset and demo draws -- 0-shot: two text-only demos; "
        f"3 beams, length penalty 0, 5 new tokens for VQA, 20 for captions; its post-processing and scoring), "
        f"at {', '.join(map(str, s['num_shots']))} shots; `-greedy` configurations: the same with 1 beam on "
        f"every path (OpenFlamingo's `evaluate_vqa(num_beams=1)`, mmgpt-eval's `num_beams` override), "
        f"greedy being mmgpt-eval's own default. "
        f"Data: easy-VQA written as VQAv2 files (every question about the first N test images) and as a "
        f"COCO-Karpathy captions set (captions generated from each image's colour/shape answers); train "
        f"images as the demo pool. Every path timed end to end on an already loaded model (data files, "
        f"prompts, images, generation, post-processing, scoring), every pass cold, the paths interleaved "
        f"in each of {s['repeats']} rounds after an untimed warm-up; medians, min-max over the rounds. "
        f"Peak RSS: the peak of one pass of that path alone, in a fresh process that loaded the model and "
        f"then reset its peak counter (Linux VmHWM; the RSS after loading in brackets), measured for the "
        f"{s['num_shots'][0]}-shot {s['beams'][0]}-beam configurations. Device {s['device']} {s['dtype']}.",
        "",
        "Summary (median seconds per pass; in brackets OpenFlamingo's loop over that path, or for the "
        "per-sample loop, that loop over mmgpt-eval at auto):",
        "",
        "| configuration | OpenFlamingo's loop, batch 8 | mmgpt-eval, batch 8 | mmgpt-eval, auto (batch) | "
        "per-sample loop | runner / bare model calls | identical predictions |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in s["configs"].items():
        lp, rat = c["loops"], c["ratios"]

        def cell(loop, key, lp=lp, rat=rat):
            r = rat.get(key) or {}
            return f"{lp[loop]['median_s']:.2f} ({r.get('median', '-')}x)" if loop in lp else "-"

        ov = (c.get("overhead_vs_bare_generate") or {}).get("median", "-")
        of = f"{lp['openflamingo-eval']['median_s']:.2f}" if "openflamingo-eval" in lp else "-"
        lines.append(
            f"| {name} | {of} | {cell('mmgpt-eval-b8', 'vs_openflamingo_eval_matched_batch')} | "
            f"{cell('mmgpt-eval-auto', 'vs_openflamingo_eval')} ({c['auto_batch_size']}) | "
            f"{cell('per-sample-loop', 'vs_per_sample_loop')} | {ov}x | "
            f"{'yes' if c['outputs_identical'] else 'NO'} |"
        )
    lines.append("")
    for name, c in s["configs"].items():
        mem = c.get("memory") or {}
        st = c["settings"]
        how = f"{st['num_shots']}-shot, " + ("greedy" if st["num_beams"] == 1 else f"{st['num_beams']} beams")
        lines += [
            f"**{name}** ({how}, {st['max_new_tokens']} new tokens; {c['samples']} samples, demo pool "
            f"{c['demo_pool']} train items, model "
            f"{c['flamingo_version']}: `{Path(c['model']['model']).name}` + `{Path(c['model']['ckpt']).name}`):",
            "",
            "| path | batch | median s | min-max s | samples/s | score | peak RSS MB (after load) |",
            "|---|---|---|---|---|---|---|",
        ]
        for loop, r in c["loops"].items():
            m = mem.get(loop) or {}
            rss = f"{m['peak_rss_mb']} ({m['rss_after_load_mb']})" if "peak_rss_mb" in m else "-"
            lines.append(
                f"| {loop} ({OF_WHAT.get(loop, loop)}) | {r['batch_size']} | {r['median_s']:.2f} | "
                f"{r['min_s']:.2f}-{r['max_s']:.2f} | {r['samples_per_s']:.1f} | {r['score']:.2f} | {rss} |"
            )
        lines.append("")
        rat = c["ratios"]
        for key, label in (
            ("vs_openflamingo_eval_matched_batch", "vs OpenFlamingo's loop, same batch size 8"),
            ("vs_openflamingo_eval", f"vs OpenFlamingo's loop, mmgpt-eval at auto (batch {c['auto_batch_size']})"),
            ("vs_per_sample_loop", "vs the per-sample loop"),
        ):
            r = rat.get(key)
            if r:
                v = c["verdicts"]["ratio_" + key]
                lines.append(
                    f"- {label}: **{r['median']}x** (per round {r['per_round_min']}-{r['per_round_max']}x); "
                    f"target >= {v['target']:g}x: {_verdict(v['met'])}"
                )
        if "overhead_vs_bare_generate" in c:
            o, p = c["overhead_vs_bare_generate"], c["profile_auto"]
            v = c["verdicts"]["overhead_vs_bare_generate"]
            lines.append(
                f"- harness overhead (auto): runner wall time / time of the bare model calls of its own "
                f"batches: **{o['median']}x** ({o['min']}-{o['max']}); target <= {v['target']:g}x: "
                f"{_verdict(v['met'])}. Median pass: {p['wall_s']:.2f} s = encode_vision {p['encode_vision_s']:.2f} s "
                f"({p['encode_vision_calls']} calls) + generate {p['generate_s']:.2f} s ({p['generate_calls']} "
                f"calls) + task preparation {p['prepare_tasks_s']:.2f} s + image read/preprocess "
                f"{p['image_read_preprocess_s']:.2f} s + scoring (VQA accuracy / CIDEr) {p['scoring_s']:.2f} s + "
                f"other {p['other_s']:.2f} s (tokenising, padding, decoding, post-processing, writing "
                f"records); without the scoring: {p['overhead_excluding_scoring']:.3f}x"
            )
        lines += [
            f"- identical predictions across the paths: {'yes' if c['outputs_identical'] else 'NO'}"
            + ("" if c["outputs_identical"] else f" (mismatched samples: {c['mismatched_samples']})"),
            "",
        ]
    lines.append(
        f"All targets met: {'yes' if s['targets_met'] else 'NO (see NOT met above)'}; all outputs identical: "
        f"{'yes' if s['outputs_identical'] else 'NO'}."
    )
    lines.append(OF_END)
    return "\n".join(lines) + "\n"


def run_openflamingo(exe: str, quick: bool) -> int:
    """``mmgpt-eval bench --openflamingo``; its section of RESULTS.md (unless ``quick``)."""
    sizes = OPENFLAMINGO_QUICK if quick else OPENFLAMINGO
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench-openflamingo.json"
        cmd = [
            exe,
            "-q",
            "bench",
            "--openflamingo",
            *[x for k, v in sizes.items() for x in ((f"--{k}",) if v is None else (f"--{k}", v))],
            "--output",
            str(out),
        ]
        rc = _run(cmd, check=False)
        if not out.exists():
            raise SystemExit(f"bench --openflamingo failed (exit code {rc}) without writing its figures")
        s = json.loads(out.read_text())
    section = openflamingo_section(s, cmd, _machine(), load)
    print(section)
    if not quick:
        _write_results(OF_BEGIN, OF_END, section, after=RANK_END)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
