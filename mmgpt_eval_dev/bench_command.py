"""``mmgpt-eval bench``: mmgpt-eval's runner vs an OpenFlamingo-eval-style loop vs a per-sample loop on
the same model, data and greedy settings; checks identical outputs; prints samples/s, tokens/s, peak
memory and the ratios (medians of --repeats passes). Then, unless ``--skip-openflamingo``, the headline of
``--openflamingo`` below (v2, VQA, OpenFlamingo's protocol, 0 shots, on ``--vqa-images`` images), whose
``ratio_vs_openflamingo_eval`` (at auto batch size), ``ratio_vs_openflamingo_eval_matched_batch``,
``ratio_vs_per_sample_loop``, ``overhead_vs_bare_generate`` and ``outputs_identical`` (both benchmarks)
go to the top level of ``--output``; the look-alike loops' own ratio and check stay as
``ratio_vs_openflamingo_loop``, ``lookalike_ratio_vs_per_sample_loop``, ``lookalike_outputs_identical``.

``--ranking``: OpenFlamingo's ImageNet classification workload instead (its 0-shot prompt, 1,000 class
names ranked after each easy-VQA test image): OpenFlamingo's ``get_rank_classifications(use_cache=True)``
loop at batch 8 vs mmgpt-eval's Ranker at batch 8 and at ``--batch-size`` (default auto); checks identical
top-5 ranks and log-probs within 1e-4 (see mmgpt_eval_dev/bench_ranking.py).

``--openflamingo``: OpenFlamingo's OWN evaluation loop (the open-flamingo wheel's ``evaluate_vqa`` /
``evaluate_captioning``) vs what ``mmgpt-eval run --protocol openflamingo`` does (the runner, at batch 8 and
auto) vs a per-sample loop, end to end on the same model, files and protocol (3 beams; 5 / 20 tokens), for
VQA and captions and the v2 (tiny-openflamingo + tiny-mmgpt) and v1 (tests/fixtures/mmgpt_v1) models;
plus the runner's overhead over the bare ``encode_vision`` + ``generate`` calls of its own batches and each
path's peak RSS in a fresh process (see mmgpt_eval_dev/bench_openflamingo.py); ``--num-shots`` and
``--of-beams`` add configurations (e.g. ``0,4`` and ``3,1``: greedy is the same prompts with 1 beam on
every path). Exit code 1 when any path's predictions differ."""

from __future__ import annotations

import argparse

from mmgpt_eval.cli.common import add_model_args, batch_size_arg
from mmgpt_eval.io import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="throughput: mmgpt-eval vs OpenFlamingo-style and per-sample loops", description=__doc__
    )
    add_model_args(p)  # default: the tiny preset; --ranking: the embedded tiny-openflamingo + tiny-mmgpt
    p.add_argument("--task", default="easyvqa", help="a task with one image + question per sample (default easyvqa)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="samples (the task's fixed subset; 0: all; default 256); --ranking: images (default 32)",
    )
    p.add_argument("--template", default="mmgpt")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument(
        "--batch-size", type=batch_size_arg, default=None, help="mmgpt-eval's batch size (default 64; --ranking: auto)"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="items in the untimed warm-up pass of each loop (default 64; --ranking: 8 images against 16 class names)",
    )
    p.add_argument(
        "--no-share-prefix",
        action="store_true",
        help="mmgpt-eval recomputes the prompt prefix a batch shares in every row",
    )
    p.add_argument("--skip-per-sample", action="store_true", help="skip the slow per-sample loop")
    p.add_argument("--output", default=None, help="write the figures as JSON")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's own choice); recorded in the figures",
    )
    r = p.add_argument_group("ranking (--ranking)")
    r.add_argument(
        "--ranking",
        action="store_true",
        help="benchmark ranking on OpenFlamingo's ImageNet workload instead of generation",
    )
    r.add_argument(
        "--classes",
        type=int,
        default=None,
        help="rank only the first N ImageNet class names (default: all 1000, OpenFlamingo's workload)",
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the demo draws (default 0)")
    r.add_argument(
        "--skip-upstream-mask",
        action="store_true",
        help="skip the untimed pass with OpenFlamingo's attention_mask=None quirk",
    )
    o = p.add_argument_group("OpenFlamingo's own eval loop (--openflamingo)")
    o.add_argument(
        "--openflamingo",
        action="store_true",
        help="benchmark against OpenFlamingo's evaluate_vqa / evaluate_captioning on its own protocol",
    )
    o.add_argument("--of-models", default="v2,v1", help="v2 and/or v1 (default v2,v1)")
    o.add_argument("--of-protocols", default="vqa,caption", help="vqa and/or caption (default vqa,caption)")
    o.add_argument(
        "--vqa-images",
        type=int,
        default=50,
        help="easy-VQA test images whose questions (about 10 each) are evaluated (default 50)",
    )
    o.add_argument("--caption-images", type=int, default=50, help="easy-VQA test images captioned (default 50)")
    o.add_argument("--train-images", type=int, default=30, help="easy-VQA train images: the demo pool (default 30)")
    o.add_argument("--num-shots", default="0", help="OpenFlamingo's --shots, one or more, comma-separated (default 0)")
    o.add_argument(
        "--of-beams",
        default="3",
        help="beams, comma-separated: 3 is OpenFlamingo's protocol, 1 greedy (the same prompts, "
        "greedy on both sides; VQA only) (default 3)",
    )
    o.add_argument("--no-memory", action="store_true", help="skip the per-path peak-RSS subprocesses")
    o.add_argument(
        "--skip-openflamingo",
        action="store_true",
        help="plain `bench`: skip its headline comparison with OpenFlamingo's own loop (v2, VQA, "
        "OpenFlamingo's protocol on --vqa-images images; the ratio_vs_openflamingo_eval* keys)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        import torch

        if args.threads < 1:
            from mmgpt_eval.errors import UserError

            raise UserError("bench: --threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.ranking and args.openflamingo:
        from mmgpt_eval.errors import UserError

        raise UserError("bench: --ranking and --openflamingo are separate benchmarks; choose one")
    if args.ranking:
        return run_ranking(args)
    if args.openflamingo:
        return run_openflamingo(args)
    if args.model is None:
        args.model = "tiny"
    from rich.console import Console
    from rich.table import Table

    from mmgpt_eval.cli.common import load_from_args
    from mmgpt_eval.config import EvalConfig
    from mmgpt_eval.model.generate import GenerationSettings
    from mmgpt_eval.runner import prepare_task
    from mmgpt_eval.taskregistry import discover, resolve

    from .bench import run_bench

    tasks = discover()
    name = resolve([args.task], tasks)[0]
    limit = 256 if args.limit is None else args.limit
    cfg = EvalConfig(limit=limit or None, template=args.template, seed=0)
    pt = prepare_task(tasks[name](), cfg)
    loaded = load_from_args(args)
    loops = (
        ("mmgpt-eval", "openflamingo-loop")
        if args.skip_per_sample
        else ("mmgpt-eval", "openflamingo-loop", "per-sample-loop")
    )
    from mmgpt_eval.model.generate import Generator

    bs = Generator(loaded).batch_cap(64 if args.batch_size is None else args.batch_size)
    summary = run_bench(
        loaded,
        pt.samples,
        pt.template,
        GenerationSettings(max_new_tokens=args.max_new_tokens),
        batch_size=bs,
        repeats=args.repeats,
        loops=loops,
        warmup=64 if args.warmup is None else args.warmup,
        share_prefix=not args.no_share_prefix,
    )
    summary["task"] = name
    summary["model"] = args.model
    t = Table(
        title=f"bench: {name}, {summary['samples']} samples, {summary['device']} {summary['dtype']}",
        title_justify="left",
    )
    for col in ("loop", "median s", "samples/s", "tokens/s", "peak CPU RSS MB", "peak GPU MB"):
        t.add_column(col, justify="left" if col == "loop" else "right")
    for loop, r in summary["loops"].items():
        t.add_row(
            loop,
            f"{r['median_s']:.3f}",
            f"{r['samples_per_s']:.1f}",
            f"{r['tokens_per_s']:.0f}",
            str(r["peak_memory"]["cpu_rss_mb"]),
            str(r["peak_memory"]["gpu_allocated_mb"] or "-"),
        )
    con = Console()
    con.print(t)
    for k in ("ratio_vs_openflamingo_loop", "ratio_vs_per_sample_loop"):
        if k in summary:
            con.print(f"{k}: {summary[k]}x")
    con.print(f"outputs identical: {summary['outputs_identical']}")
    if not args.skip_openflamingo:
        of = openflamingo_headline(args, con)
        summary["lookalike_ratio_vs_per_sample_loop"] = summary.pop("ratio_vs_per_sample_loop", None)
        summary["lookalike_outputs_identical"] = summary["outputs_identical"]
        summary.update(of)
        summary["outputs_identical"] = bool(
            summary["lookalike_outputs_identical"] and of["openflamingo"]["outputs_identical"]
        )
        con.print(f"outputs identical (both benchmarks): {summary['outputs_identical']}")
    if args.output:
        atomic_write_json(args.output, summary)
    return 0 if summary["outputs_identical"] else 1


HEADLINE_KEYS = (
    "ratio_vs_openflamingo_eval",
    "ratio_vs_openflamingo_eval_matched_batch",
    "ratio_vs_per_sample_loop",
    "overhead_vs_bare_generate",
)


def quiet_openflamingo_bench(**kwargs) -> dict:
    """:func:`mmgpt_eval_dev.bench_openflamingo.run_openflamingo_bench` with info logs off and the progress
    that OpenFlamingo's loop and pycocotools print sent to stderr (stdout keeps the tables)."""
    import contextlib
    import logging
    import sys

    from .bench_openflamingo import run_openflamingo_bench

    for name in ("mmgpt_eval", "open_flamingo"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        return run_openflamingo_bench(**kwargs)


def openflamingo_headline(args: argparse.Namespace, con) -> dict:
    """Plain ``bench``'s comparison with OpenFlamingo's own loop: the headline configuration of
    ``bench --openflamingo`` (v2, VQA, OpenFlamingo's protocol, 0 shots); its keys for the JSON (the
    caller keeps the look-alike loops' own ``ratio_vs_per_sample_loop`` / ``outputs_identical`` under
    ``lookalike_*``)."""
    con.print(
        "against OpenFlamingo's own evaluate_vqa on its protocol, on the fixed v2 model of `bench "
        "--openflamingo` (tiny-openflamingo + tiny-mmgpt; --skip-openflamingo skips this):",
        highlight=False,
    )
    s = quiet_openflamingo_bench(
        models=("v2",),
        kinds=("vqa",),
        vqa_images=args.vqa_images,
        train_images=args.train_images,
        repeats=args.repeats,
        memory=False,
        threads=args.threads,
    )
    for line in openflamingo_lines(s):
        con.print(line, highlight=False)
    return {"openflamingo": s, **{k: s[k] for k in HEADLINE_KEYS}, "headline_config": s["headline_config"]}


def run_ranking(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mmgpt_eval.cli.common import load_from_args
    from mmgpt_eval.errors import UserError

    from .bench_ranking import OF_LOOP, check_image_count, run_ranking_bench

    n_images = 32 if args.limit is None else args.limit
    check_image_count(n_images)
    if args.classes is not None and not 1 <= args.classes <= 1000:
        raise UserError("bench --ranking: --classes must be between 1 and 1000")
    if args.model is None:  # the embedded tiny MultiModal-GPT: trained weights, so the ranks mean something
        from mmgpt_eval.api import EMBEDDED_DEFAULT

        args.model = EMBEDDED_DEFAULT["model"]
        if args.ckpt is None:
            args.ckpt = EMBEDDED_DEFAULT.get("ckpt")
    loaded = load_from_args(args)
    warmup = 8 if args.warmup is None else args.warmup
    summary = run_ranking_bench(
        loaded,
        n_images=n_images,
        n_classes=args.classes,
        batch_size=0 if args.batch_size is None else args.batch_size,
        repeats=args.repeats,
        seed=args.seed,
        warmup_images=warmup,
        upstream_mask=not args.skip_upstream_mask,
    )
    summary["model"] = args.model
    summary["ckpt"] = args.ckpt
    t = Table(
        title=f"bench --ranking: OpenFlamingo ImageNet 0-shot, {summary['images']} images x "
        f"{summary['classes']} class names, {summary['device']} {summary['dtype']}, "
        f"{summary['torch_threads']} torch thread{'' if summary['torch_threads'] == 1 else 's'}",
        title_justify="left",
    )
    for col in ("loop", "batch", "median s", "min-max s", "images/s", "scores/s", "peak RSS MB", "peak GPU MB"):
        t.add_column(col, justify="left" if col == "loop" else "right")
    for loop, r in summary["loops"].items():
        t.add_row(
            loop,
            str(r["batch_size"]),
            f"{r['median_s']:.3f}",
            f"{r['min_s']:.3f}-{r['max_s']:.3f}",
            f"{r['images_per_s']:.2f}",
            f"{r['scores_per_s']:.0f}",
            str(r["peak_memory"]["cpu_rss_mb"]),
            str(r["peak_memory"]["gpu_allocated_mb"] or "-"),
        )
    con = Console()
    if not con.is_terminal:
        con.width = max(con.width, 120)  # a file or pipe: one table row per line
    con.print(t)
    pr = summary["paired_ratios"]
    con.print(
        f"ratio_vs_openflamingo_rank (batch {summary['loops']['mmgpt-eval-rank-auto']['batch_size']}): "
        f"{summary['ratio_vs_openflamingo_rank']}x (per round {min(pr['auto'])}-{max(pr['auto'])}x)"
    )
    con.print(
        f"ratio_vs_openflamingo_rank_matched_batch (batch 8): "
        f"{summary['ratio_vs_openflamingo_rank_matched_batch']}x (per round "
        f"{min(pr['matched_batch'])}-{max(pr['matched_batch'])}x)"
    )
    con.print(
        f"top-5 ranks identical: {summary['ranks_identical']}; max |log-prob diff| vs {OF_LOOP}: "
        f"{summary['max_abs_logprob_diff']:.2e} (tolerance {summary['tolerance']:.0e})"
    )
    con.print(f"outputs identical: {summary['outputs_identical']}")
    if "upstream_mask" in summary:
        u = summary["upstream_mask"]
        con.print(
            f"upstream mask (attention_mask=None, not timed): {u['images_with_different_top5']} of "
            f"{summary['images']} images with a different top-5 ({summary['padded_contexts_at_batch_8']} "
            f"padded contexts), max |log-prob diff| {u['max_abs_logprob_diff']:.2e}"
        )
    verdict = "met" if summary["target_met"] else "NOT met"
    con.print(
        f"target >= {summary['target_ratio']:g}x at batch auto: {verdict} "
        f"(measured {summary['ratio_vs_openflamingo_rank']}x)"
    )
    if args.output:
        atomic_write_json(args.output, summary)
    return 0 if summary["outputs_identical"] else 1


def openflamingo_lines(s: dict) -> list[str]:
    """The verdict lines of a ``--openflamingo`` summary (also used by benchmarks/run_all.py)."""
    lines = []
    for name, c in s["configs"].items():
        for key, v in c["verdicts"].items():
            cmp = "<=" if key == "overhead_vs_bare_generate" else ">="
            lines.append(
                f"{name}: {key} {v['measured']}x (target {cmp} {v['target']:g}x): {'met' if v['met'] else 'NOT met'}"
            )
        lines.append(
            f"{name}: outputs identical: {c['outputs_identical']}"
            + ("" if c["outputs_identical"] else f" (mismatched samples {c['mismatched_samples']})")
        )
    return lines


def run_openflamingo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mmgpt_eval.errors import UserError

    models = tuple(x for x in args.of_models.split(",") if x)
    kinds = tuple(x for x in args.of_protocols.split(",") if x)
    if not models or set(models) - {"v1", "v2"}:
        raise UserError("bench --openflamingo: --of-models takes v2 and/or v1")
    if not kinds or set(kinds) - {"vqa", "caption"}:
        raise UserError("bench --openflamingo: --of-protocols takes vqa and/or caption")
    if args.model or args.ckpt:
        raise UserError("bench --openflamingo: the models are fixed (--of-models v2,v1)")
    try:
        shots = tuple(int(x) for x in str(args.num_shots).split(",") if x.strip())
        beams = tuple(int(x) for x in str(args.of_beams).split(",") if x.strip())
    except ValueError:
        raise UserError("bench --openflamingo: --num-shots and --of-beams take comma-separated integers") from None
    if not shots or min(shots) < 0 or not beams or min(beams) < 1:
        raise UserError("bench --openflamingo: --num-shots needs integers >= 0 and --of-beams integers >= 1")
    n = args.limit if args.limit else -1  # OpenFlamingo's --num_samples
    con = Console(stderr=True)
    s = quiet_openflamingo_bench(
        models=models,
        kinds=kinds,
        vqa_images=args.vqa_images,
        caption_images=args.caption_images,
        train_images=args.train_images,
        num_samples={"vqa": n, "caption": n},
        num_shots=shots,
        beams=beams,
        repeats=args.repeats,
        auto_batch=0 if args.batch_size is None else args.batch_size,
        memory=not args.no_memory,
        threads=args.threads,
        log=lambda m: con.print(m, highlight=False),
    )
    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 140)
    for name, c in s["configs"].items():
        t = Table(
            title=f"bench --openflamingo {name}: {c['samples']} samples, {s['device']} {s['dtype']}, "
            f"{s['torch_threads']} torch thread(s)",
            title_justify="left",
        )
        for col in ("path", "batch", "median s", "min-max s", "samples/s", "score", "peak RSS MB"):
            t.add_column(col, justify="left" if col == "path" else "right")
        for loop, r in c["loops"].items():
            mem = (c.get("memory") or {}).get(loop, {})
            t.add_row(
                loop,
                str(r["batch_size"]),
                f"{r['median_s']:.3f}",
                f"{r['min_s']:.3f}-{r['max_s']:.3f}",
                f"{r['samples_per_s']:.1f}",
                f"{r['score']:.2f}",
                str(mem.get("peak_rss_mb", "-")),
            )
        out.print(t)
    for line in openflamingo_lines(s):
        out.print(line, highlight=False)
    for k in (
        "ratio_vs_openflamingo_eval",
        "ratio_vs_openflamingo_eval_matched_batch",
        "ratio_vs_per_sample_loop",
        "overhead_vs_bare_generate",
        "outputs_identical",
    ):
        out.print(f"{k} ({s['headline_config']}): {s[k]}", highlight=False)
    if args.output:
        atomic_write_json(args.output, s)
    return 0 if s["outputs_identical"] else 1
