"""``mmgpt-eval report``: one self-contained HTML report of one or more runs.

    mmgpt-eval report RUN [RUN...] -o report.html [--baseline RUN] [--gate GATE.json]
        [--labels a,b] [--intersect] [--max-gallery N]

RUN is a run directory or its results.json. Every input is read and checked before anything is
written (each run's per-sample logs must belong to its results: ``results.check_run``); the report
is written atomically and its path printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report (metrics, deltas with 95%% CIs, breakdowns, galleries, provenance)",
        description="Write one self-contained HTML file (no network, no scripts) comparing runs: every metric with "
        "paired 95%% intervals and p-values vs --baseline, per-task breakdowns, a trend plot across checkpoints, "
        "galleries of the largest per-sample regressions and improvements, dialogue transcripts, provenance "
        "and the gate verdict; a judged run (judge.json) adds its judge's scores, intervals and rationales.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory or results.json (several: checkpoints)")
    p.add_argument("-o", "--output", required=True, metavar="report.html", help="HTML file to write")
    p.add_argument("--baseline", metavar="RUN", help="run to compare every RUN against")
    p.add_argument("--gate", metavar="GATE.json", help="gate result JSON (verdict and per-rule status) to include")
    p.add_argument(
        "--labels",
        metavar="a,b",
        help="comma-separated display names, one per RUN (default: what each run evaluated: its --label, "
        "else its checkpoint's name, else its model spec's name)",
    )
    p.add_argument(
        "--intersect", action="store_true", help="compare runs that evaluated different samples on their common samples"
    )
    p.add_argument(
        "--max-gallery",
        type=int,
        default=12,
        metavar="N",
        help="samples per gallery (regressions / improvements) per task (default 12)",
    )
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import load_gate, write_report
    from ..report.columns import read_checked

    out = Path(args.output)
    if out.is_dir():
        raise UserError("is a directory; give the report's file name (e.g. report.html)", out)
    if args.max_gallery < 0:
        raise UserError("--max-gallery must be >= 0")
    labels = None
    if args.labels is not None:
        labels = [s.strip() for s in args.labels.split(",")]
        if len(labels) != len(args.runs):
            raise UserError(f"--labels has {len(labels)} names for {len(args.runs)} runs; give one per run")
        if any(not s for s in labels):
            raise UserError("--labels: empty name")
    # results and per-sample logs must agree (results.check_run); each log is read once, for the check and the page
    runs = [read_checked(r) for r in args.runs]
    baseline = read_checked(args.baseline) if args.baseline else None
    gate = load_gate(args.gate) if args.gate else None
    path = write_report(
        out,
        runs,
        baseline=baseline,
        gate=gate,
        labels=labels,
        max_gallery=args.max_gallery,
        intersect=args.intersect,
        title=args.title,
    )
    print(path)
    return 0
