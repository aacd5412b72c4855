"""``mmgpt-eval run``: evaluate a model (+ checkpoint) on tasks; results.json, per-sample logs, report.

With neither --model nor --tasks nor --ckpt it runs the embedded default: the tiny MultiModal-GPT on
easy-VQA (a fixed 200-question subset), so the whole path can be seen working offline.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..api import SeriesResults, evaluate_config
from ..config import EvalConfig, add_run_arguments
from .judge import add_judge_arguments, apply_judge_table, judge_settings

log = logging.getLogger("mmgpt_eval")


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    """``run``'s flags: EvalConfig's (generated from its field metadata), ``--config``, ``--task-config``
    and the tasks' own options (:func:`mmgpt_eval.config.add_run_arguments`)."""
    p = sub.add_parser(
        "run",
        help="evaluate a model on tasks (the main command)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(p, argv if argv is not None else sys.argv[1:])
    add_judge_arguments(p, required=False)
    p.set_defaults(func=run, _actions={a.dest: a for a in p._actions}, _argv=argv)


def run(args: argparse.Namespace) -> int:
    argv = sys.argv[1:] if args._argv is None else args._argv
    config = EvalConfig.from_cli(args, argv=argv)
    if getattr(args, "config", None):
        apply_judge_table(args, argv)
    judge = None
    settings = judge_settings(args)
    if settings is not None:  # the judge must answer before any model loads or anything is generated
        from ..judging import build_judge

        judge = build_judge(settings)
    # judged (when --judge) right after the run, before the report is written again and trackers log it
    results = evaluate_config(config, judge=judge, judge_repeats=settings.repeats if settings is not None else 1)
    if results is None:  # a torchrun rank other than 0: rank 0 writes everything
        return 0
    if isinstance(results, SeriesResults):
        print_series(results.entries)
        print(f"series: {results.path}")
        assert results.path is not None  # results come back saved
        out_dir = results.path.parent
    else:
        if results.baseline:
            print_comparison(results.baseline["comparisons"])
        print_summary(results)
        print_published_numbers(results)
        print(f"results: {results.path}")
        assert results.run_dir is not None  # results come back saved
        out_dir = results.run_dir
        if judge is not None:
            from ..judge_results import read_judge
            from .judge import print_judgment

            print_judgment(read_judge(out_dir))
            print(f"judgments: {out_dir / 'judge.json'}")
    if config.report:
        print(f"report: {(out_dir / 'report.html').resolve()}")
    return 0


# ------------------------------------------------------------------------------------------ printing
def print_series(entries) -> None:
    from .common import stdout_console
    from rich.table import Table

    t = Table(title="checkpoint series (metric vs step)", title_justify="left")
    t.add_column("step", justify="right")
    t.add_column("checkpoint")
    cols = [(task, m) for task, ms in entries[0]["metrics"].items() for m in ms]
    for task, m in cols:
        t.add_column(f"{task}/{m}", justify="right")
    for e in entries:
        vals = [e["metrics"].get(task, {}).get(m) for task, m in cols]
        t.add_row(f"{e['step']:g}", e["name"], *["-" if v is None else f"{v:.4g}" for v in vals])
    stdout_console().print(t)


def print_comparison(comps: list[dict[str, Any]]) -> None:
    from .common import stdout_console
    from rich.table import Table

    t = Table(title="vs baseline (paired, 95% CI)", title_justify="left")
    for col in ("task", "metric", "baseline", "candidate", "delta", "95% CI", "p"):
        t.add_column(col, justify="left" if col in ("task", "metric") else "right")

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    for c in comps:
        t.add_row(
            c["task"],
            c["metric"],
            f(c.get("baseline")),
            f(c.get("candidate")),
            f(c.get("delta")),
            "-" if c.get("ci_low") is None else f"[{c['ci_low']:.3g}, {c['ci_high']:.3g}]",
            "-" if c.get("p_value") is None else f"{c['p_value']:.3g}",
        )
    stdout_console().print(t)


def print_published_numbers(results) -> None:
    """Published OpenFlamingo rows beside the run's numbers where task, preset, shots and protocol match."""
    from ..published import print_published
    from .common import stdout_console

    print_published([results], console=stdout_console())


def print_summary(results) -> None:
    from .common import stdout_console
    from rich.table import Table

    from ..compare import run_label

    t = Table(title=f"mmgpt-eval results: {run_label(results)}", title_justify="left")
    for col in ("task", "metric", "value", "n", "template", "samples/s"):
        t.add_column(col, justify="right" if col in ("value", "n", "samples/s") else "left")
    for name, tr in results.tasks.items():
        first = True
        for metric, value in tr.metrics.items():
            unit = tr.metric_info.get(metric, {}).get("unit", "")
            sps = tr.timing.get("samples_per_s")
            t.add_row(
                name if first else "",
                metric,
                f"{value:.4g}{unit}" if isinstance(value, float) else str(value),
                str(tr.n_samples) if first else "",
                tr.template["name"] if first else "",
                f"{sps:.1f}" if first and sps else "",
            )
            first = False
    stdout_console().print(t)
