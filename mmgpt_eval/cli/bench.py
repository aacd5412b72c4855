"""``mmgpt-eval bench``: mmgpt-eval's runner vs an OpenFlamingo-eval-style loop vs a per-sample loop on
the same model, data and greedy settings; checks identical outputs; prints samples/s, tokens/s, peak
memory and the ratios (medians of --repeats passes)."""

from __future__ import annotations

import argparse

from ..io import atomic_write_json
from .common import add_model_args, batch_size_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput: mmgpt-eval vs OpenFlamingo-style and per-sample loops",
                       description=__doc__)
    add_model_args(p, default_model="tiny")
    p.add_argument("--task", default="easyvqa", help="a task with one image + question per sample (default easyvqa)")
    p.add_argument("--limit", type=int, default=256, help="samples (the task's fixed subset; 0: all)")
    p.add_argument("--template", default="mmgpt")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--batch-size", type=batch_size_arg, default=64, help="mmgpt-eval's batch size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=64, help="items in the untimed warm-up pass of each loop")
    p.add_argument("--no-share-prefix", action="store_true",
                   help="mmgpt-eval recomputes the prompt prefix a batch shares in every row")
    p.add_argument("--skip-per-sample", action="store_true", help="skip the slow per-sample loop")
    p.add_argument("--output", default=None, help="write the figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..bench import run_bench
    from ..model.generate import GenerationSettings
    from ..runner import RunConfig, prepare_task
    from ..taskregistry import discover, resolve
    from .common import load_from_args

    tasks = discover()
    name = resolve([args.task], tasks)[0]
    cfg = RunConfig(output_dir=None, limit=args.limit or None, template=args.template)  # type: ignore[arg-type]
    pt = prepare_task(tasks[name](), cfg)
    loaded = load_from_args(args)
    loops = ("mmgpt-eval", "openflamingo-loop") if args.skip_per_sample else \
        ("mmgpt-eval", "openflamingo-loop", "per-sample-loop")
    from ..model.generate import Generator

    bs = Generator(loaded).batch_cap(args.batch_size)
    summary = run_bench(loaded, pt.samples, pt.template, GenerationSettings(max_new_tokens=args.max_new_tokens),
                        batch_size=bs, repeats=args.repeats, loops=loops, warmup=args.warmup,
                        share_prefix=not args.no_share_prefix)
    summary["task"] = name
    summary["model"] = args.model
    t = Table(title=f"bench: {name}, {summary['samples']} samples, {summary['device']} {summary['dtype']}",
              title_justify="left")
    for col in ("loop", "median s", "samples/s", "tokens/s", "peak CPU RSS MB", "peak GPU MB"):
        t.add_column(col, justify="left" if col == "loop" else "right")
    for loop, r in summary["loops"].items():
        t.add_row(loop, f"{r['median_s']:.3f}", f"{r['samples_per_s']:.1f}", f"{r['tokens_per_s']:.0f}",
                  str(r["peak_memory"]["cpu_rss_mb"]), str(r["peak_memory"]["gpu_allocated_mb"] or "-"))
    con = Console()
    con.print(t)
    for k in ("ratio_vs_openflamingo_loop", "ratio_vs_per_sample_loop"):
        if k in summary:
            con.print(f"{k}: {summary[k]}x")
    con.print(f"outputs identical: {summary['outputs_identical']}")
    if args.output:
        atomic_write_json(args.output, summary)
    return 0 if summary["outputs_identical"] else 1
