"""``mmgpt-eval compare RUN_A RUN_B [RUN_C ...] [--baseline RUN]``: metrics side by side, with paired
deltas, 95% intervals and p-values against the baseline (``--baseline``, else the first run). Several
checkpoints of one training run also give a trend table (metric vs step). ``--json``: the same as one
JSON document on stdout instead of tables; ``--json FILE``: tables, and the document written to FILE."""

from __future__ import annotations

import argparse

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import atomic_write_json
from ..published import print_published, published_json
from .common import print_json, stdout_console

JSON_SCHEMA, JSON_VERSION = "compare", 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs with paired statistics", description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or results.json files")
    p.add_argument("--baseline", default=None, metavar="RUN", help="the run to compare against (default: the first)")
    p.add_argument("--intersect", action="store_true", help="compare on the common samples when the sets differ")
    p.add_argument("--tasks", default=None, help="comma-separated subset of tasks")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    p.add_argument(
        "--json",
        dest="json_out",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="the comparisons as JSON: alone (or `-`), one document on stdout instead of tables; with FILE, "
        "written there as well as the tables",
    )
    p.set_defaults(func=run)


def _step(run, position: int) -> float:
    """The checkpoint's recorded step, else the run's position on the command line."""
    from ..compare import checkpoint_step

    step = checkpoint_step(run)
    return float(position) if step is None else step


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..compare import compare_runs, run_label
    from ..results import read_run

    # results and per-sample logs must agree (results.read_run: one read of each log, for the check and
    # the comparison); a folder that fails is a one-line error, never numbers
    runs = [read_run(r) for r in args.runs]
    if args.baseline:
        base = read_run(args.baseline)
        candidates = runs
    else:
        if len(runs) < 2:
            raise UserError("give at least two runs, or --baseline")
        base, candidates = runs[0], runs[1:]
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    to_stdout = args.json_out == "-"
    if args.json_out and not to_stdout:
        _check_json_target(args.json_out, [args.baseline, *args.runs])
    con = stdout_console()
    all_out = []
    for cand in candidates:
        comps = compare_runs(
            base, cand, intersect=args.intersect, tasks=tasks, confidence=args.confidence, n_resamples=args.resamples
        )
        t = Table(title=f"{run_label(cand)} vs baseline {run_label(base)}", title_justify="left")
        for col in (
            "task",
            "metric",
            "baseline",
            "candidate",
            "delta",
            f"{int(args.confidence * 100)}% CI",
            "p",
            "test",
            "n",
        ):
            t.add_column(col, justify="left" if col in ("task", "metric", "test") else "right")
        for c in comps:
            arrow = {True: "[green]better[/]", False: "[red]worse[/]", None: ""}[c.improved]

            def fmt(v: float | None) -> str:
                return "-" if v is None else f"{v:.4g}"

            t.add_row(
                c.task,
                c.metric,
                fmt(c.baseline),
                fmt(c.candidate),
                f"{fmt(c.delta)} {arrow}",
                "-" if c.ci_low is None else f"[{c.ci_low:.3g}, {c.ci_high:.3g}]",
                "-" if c.p_value is None else f"{c.p_value:.3g}",
                c.test or "",
                str(c.n or ""),
            )
        if not to_stdout:
            con.print(t)
            for c in comps:
                if c.note and "corpus-only" not in c.note:
                    con.print(f"note: {escape(c.note)}")
        all_out.append(
            {
                "baseline": str(base.path),
                "candidate": str(cand.path),
                "comparisons": [c.to_dict() for c in comps],
                "published": {"baseline": published_json(base, tasks), "candidate": published_json(cand, tasks)},
            }
        )
    trend: list[dict[str, Any]] = []
    if len(runs) >= 3 or (args.baseline and len(runs) >= 2):
        series = [base] + candidates if not args.baseline else candidates
        t = Table(title="trend (primary metrics vs step)", title_justify="left")
        t.add_column("step", justify="right")
        t.add_column("run")
        task_names = [n for n in series[0].tasks if tasks is None or n in tasks]
        for name in task_names:
            t.add_column(f"{name}/{series[0].tasks[name].primary_metric}", justify="right")
        for pos, r in sorted(enumerate(series), key=lambda pr: _step(pr[1], pr[0])):
            vals = []
            primary: dict[str, float | None] = {}
            for name in task_names:
                tr = r.tasks.get(name)
                v = tr.metrics.get(tr.primary_metric) if tr else None
                vals.append("-" if v is None else f"{v:.4g}")
                primary[f"{name}/{series[0].tasks[name].primary_metric}"] = v
            t.add_row(f"{_step(r, pos):g}", escape(run_label(r)), *vals)
            trend.append({"step": _step(r, pos), "run": str(r.path), "label": run_label(r), "primary": primary})
        if not to_stdout:
            con.print(t)

    from ..compare import compare_judgments

    judgments = compare_judgments([base] + [c for c in candidates if c is not base], tasks)
    if judgments is not None and not to_stdout:
        print_judgments(judgments, [run_label(r) for r in [base] + [c for c in candidates if c is not base]])
    doc = {
        "runs": all_out,
        **({"trend": trend} if trend else {}),
        **({"judge": judgments.to_dict()} if judgments is not None else {}),
    }
    if to_stdout:
        print_json(JSON_SCHEMA, JSON_VERSION, doc)
        return 0
    print_published([base] + [c for c in candidates if c is not base], tasks=tasks, console=stdout_console())
    if args.json_out:
        atomic_write_json(args.json_out, {"schema": f"mmgpt-eval/{JSON_SCHEMA}", "schema_version": JSON_VERSION, **doc})
    return 0


def print_judgments(j: Any, labels: list[str]) -> None:
    """The judge metrics side by side (value and 95% interval per run), then the notes."""
    from rich.markup import escape
    from rich.table import Table

    con = stdout_console()
    t = Table(title="judged by a model", title_justify="left")
    t.add_column("task")
    t.add_column("metric")
    for label in labels:
        t.add_column(escape(label), justify="right")
    for row in j.rows:
        cells = []
        for v, iv in zip(row["values"], row["intervals"]):
            cell = "-" if v is None else f"{v:.4g}"
            cells.append(cell + (f" [{iv[0]:.3g}, {iv[1]:.3g}]" if iv is not None else ""))
        t.add_row(row["task"], row["metric"], *cells)
    con.print(t)
    for note in j.notes:
        con.print(f"note: {escape(note)}")


def _check_json_target(path: str, runs: list[str | None]) -> None:
    """``--json FILE`` must not name a run (``compare --json RUN_A RUN_B`` reads RUN_A as the file):
    refuse a folder, a results.json or any run given, before anything is written."""
    p = Path(path)
    given = {Path(r).resolve() for r in runs if r} | {Path(r).resolve() / "results.json" for r in runs if r}
    if p.is_dir() or p.name == "results.json" or p.resolve() in given:
        raise UserError(
            f"--json {path}: that is a run, not a file to write (for JSON on stdout put --json after the runs, "
            "or write --json -)"
        )
