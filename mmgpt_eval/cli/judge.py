"""``mmgpt-eval judge RUN [--baseline RUN] [--tasks ...] --judge SPEC``: judge a run's answers with a
model, from its per-sample logs (nothing is generated again). The tasks that declare judging are
graded in their modes (pairwise only against ``--baseline``, by default the baseline stored in the run);
``RUN/judge.json`` and ``RUN/judge/<task>.jsonl`` are written, the judge's replies cached in
``RUN/judge/cache.jsonl``: judging again asks only what changed. The judge is one of
``openai:MODEL@BASE_URL`` (any OpenAI-compatible endpoint; key from ``--judge-api-key-env``),
``local:PATH`` (a local causal LM folder) or ``python:MODULE:FUNCTION`` / ``python:FILE.py:FUNCTION``
(``fn(messages, repeat) -> str``). Printed at the end: what the judging cost."""

from __future__ import annotations

import argparse
from typing import Any

from ..judging.spec import DEFAULT_KEY_ENV, SPEC_HELP, JudgeSettings


def add_judge_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    """The judge's flags (``judge`` requires ``--judge``; ``run`` takes it to judge after the run)."""
    g = p.add_argument_group("judging by a model")
    g.add_argument("--judge", required=required, default=None, metavar="SPEC", help=f"the judge: {SPEC_HELP}")
    g.add_argument(
        "--judge-api-key-env",
        default=DEFAULT_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the judge endpoint's API key (default {DEFAULT_KEY_ENV})",
    )
    g.add_argument("--judge-repeats", type=int, default=1, metavar="N", help="ask every judgment N times (default 1)")
    g.add_argument("--judge-concurrency", type=int, default=4, metavar="N", help="judge calls in flight (default 4)")
    g.add_argument("--judge-timeout", type=float, default=60.0, metavar="S", help="seconds per judge call (default 60)")
    g.add_argument("--judge-retries", type=int, default=4, metavar="N", help="retries on 429/5xx/timeouts (default 4)")


def apply_judge_table(args: argparse.Namespace, argv: list[str]) -> None:
    """Fill the judge flags not given on the command line from the run config's ``[judge]`` table."""
    from ..config import read_judge_table

    table = read_judge_table(args.config)
    for key, value in table.items():
        dest = "judge" if key == "spec" else f"judge_{key}"
        flag = "--" + dest.replace("_", "-")
        if not any(a == flag or a.startswith(flag + "=") for a in argv):
            setattr(args, dest, value)


def judge_settings(args: argparse.Namespace) -> JudgeSettings | None:
    if not getattr(args, "judge", None):
        return None
    return JudgeSettings(
        spec=args.judge,
        api_key_env=args.judge_api_key_env,
        repeats=args.judge_repeats,
        concurrency=args.judge_concurrency,
        timeout=args.judge_timeout,
        retries=args.judge_retries,
    ).validate()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "judge",
        help="judge a run's open-ended answers with a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="the run folder (or its results.json)")
    p.add_argument("--baseline", default=None, metavar="RUN", help="the baseline run for pairwise judging")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the run's tasks")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_judge_arguments(p, required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..judging import build_judge, judge_run

    settings = judge_settings(args)
    assert settings is not None
    judge = build_judge(settings)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    res = judge_run(
        args.run_dir,
        judge=judge,
        baseline=args.baseline,
        tasks=tasks,
        repeats=settings.repeats,
        progress=not args.no_progress,
    )
    print_judgment(res)
    assert res.run_dir is not None
    print(f"judgments: {res.run_dir / 'judge.json'}")
    return 0


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def print_judgment(res: Any) -> None:
    """Per task: every judge metric (with its 95% interval and the baseline's value), the counts, and
    at the end what the judging cost."""
    from rich.table import Table

    from .common import stdout_console

    console = stdout_console()
    who = res.judge.get("model", "?")
    for task, tj in res.tasks.items():
        t = Table(title=f"{task}: judged by {who} ({tj.n_items} items, repeats {res.repeats})", title_justify="left")
        for col in ("metric", "value", "95% CI", "baseline"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for name, v in tj.metrics.items():
            iv = tj.intervals.get(name)
            t.add_row(
                name, _f(v), "-" if iv is None else f"[{iv[0]:.3g}, {iv[1]:.3g}]", _f(tj.baseline_metrics.get(name))
            )
        console.print(t)
        console.print("counts: " + ", ".join(f"{k} {v}" for k, v in tj.counts.items()))
        for note in tj.notes:
            console.print(f"note: {note}")
    c = res.cost
    console.print(
        f"judge cost: {c['calls']} calls made, {c['cached']} answered from the cache, "
        f"{c['prompt_tokens']} prompt + {c['completion_tokens']} completion tokens, "
        f"{c['retries']} retries, {c['failures']} failed calls"
    )
