"""``mmgpt-eval export``: runs as tidy tables for pandas, spreadsheets and notebooks.

    mmgpt-eval export RUN [RUN...] --output DIR [--format csv|parquet|jsonl] [--tasks a,b] [--no-baseline]

Writes ``DIR/metrics.<ext>`` (one row per run, task and metric, with the stored baseline comparison's
delta, interval and p-value) and ``DIR/samples.<ext>`` (one row per run and sample, all tasks in one
table with a ``task`` column); for judged runs (judge.json) the judge's metrics are rows of the metrics
table (source ``judge``) and ``DIR/judgments.<ext>`` holds one row per judgment; the columns are those
of :mod:`mmgpt_eval.frames`. RUN is a run folder
or its results.json; a series folder (``series.json``) stands for its checkpoints. A run's stored
baseline (``--baseline``) is exported as rows of role ``baseline`` unless ``--no-baseline``. Every run
is read and checked (its per-sample logs must belong to its results) before anything is written; each
file is written atomically and its path printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserError

FORMATS = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export runs' metrics and per-sample records as CSV, Parquet or JSONL",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="run folder or results.json; a series folder: its checkpoints"
    )
    p.add_argument("--format", choices=sorted(FORMATS), default="csv", help="file format (default csv)")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder to write metrics.<ext> and samples.<ext> into"
    )
    p.add_argument("--tasks", default=None, metavar="a,b", help="comma-separated subset of tasks (default: all)")
    p.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="leave out the baselines the runs store"
    )
    p.set_defaults(func=run)


def _parquet_engine() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        try:
            import fastparquet  # noqa: F401
        except ImportError:
            raise UserError("--format parquet needs pyarrow (pip install pyarrow), which is not installed") from None


def write_frame(df: Any, path: Path, fmt: str) -> None:
    """``df`` to ``path`` atomically (a temporary file beside it, renamed into place)."""
    from ..io import atomic_writer

    if fmt == "parquet":
        with atomic_writer(path, "wb", encoding=None) as f:
            df.to_parquet(f, index=False)
    elif fmt == "csv":
        with atomic_writer(path) as f:
            df.to_csv(f, index=False)
    else:
        with atomic_writer(path) as f:
            df.to_json(f, orient="records", lines=True, force_ascii=False)


def run(args: argparse.Namespace) -> int:
    from ..frames import collect_runs, judgments_frame, metrics_frame, samples_frames
    from ..io import check_output_dir
    from ..results import check_run

    out = check_output_dir(args.output, "export folder")
    if args.format == "parquet":
        _parquet_engine()
    tasks = None
    if args.tasks is not None:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        if not tasks:
            raise UserError("--tasks: no task named")
    frs = collect_runs(list(args.runs), include_baseline=args.baseline)
    for fr in frs:
        # results and per-sample logs must agree; the samples table's rows come from that same read
        rows = {t: fr.sample_rows(t).add for t in fr.results.tasks if tasks is None or t in tasks}
        check_run(fr.results, rows)
    samples = samples_frames(frs, tasks, include_baseline=False)
    metrics = metrics_frame(frs, include_baseline=False)  # a stale judge.json: one-line error, nothing written
    judgments = judgments_frame(frs, include_baseline=False, tasks=tasks)
    if tasks is not None:
        metrics = metrics[metrics["task"].isin(tasks)].reset_index(drop=True)
    ext = FORMATS[args.format]
    frames = [("metrics", metrics), ("samples", samples)]
    if len(judgments):  # only judged runs have judgments
        frames.append(("judgments", judgments))
    for name, df in frames:
        path = out / f"{name}.{ext}"
        write_frame(df, path, args.format)
        print(path)
    return 0
