"""``mmgpt-eval data check [--tasks ...] [--data-root DIR]``: per task, which data files are present,
which are missing, and where each missing file comes from (official sources; nothing is downloaded).
Exit code 0 when every required file is present, 2 otherwise (missing input; 1 is only a gate regression)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="check the data root (what is present / missing / where to get it)", description=__doc__
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="report present and missing data files per task")
    c.add_argument("--tasks", default=None, help="comma-separated (default: every task that reads data files)")
    c.add_argument("--data-root", default=None, help="data root (default $MMGPT_EVAL_DATA or ~/.cache/mmgpt-eval/data)")
    c.add_argument("--include-path", action="append", default=[], metavar="DIR")
    c.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..datapaths import check, data_root
    from ..taskregistry import discover, resolve

    tasks = discover(args.include_path)
    root = data_root(args.data_root)
    names = resolve(args.tasks.split(","), tasks) if args.tasks else sorted(tasks)
    rows: list[dict[str, Any]] = []
    for n in names:
        found = check(tasks[n](), root)
        if not found and args.tasks:
            rows.append(
                {
                    "task": n,
                    "option": "-",
                    "path": "(ships with mmgpt-eval)",
                    "present": True,
                    "required": True,
                    "source": "",
                    "from": "",
                }
            )
        rows.extend(found)
    con = Console(width=160)
    con.print(f"data root: {root}")
    t = Table(title_justify="left")
    for col in ("task", "file", "status", "path", "get it from"):
        t.add_column(col, overflow="fold")
    missing = 0
    for r in rows:
        status = (
            "[green]present[/]" if r["present"] else ("[red]MISSING[/]" if r["required"] else "[yellow]optional[/]")
        )
        if not r["present"] and r["required"]:
            missing += 1
        t.add_row(r["task"], r["option"], status, r["path"], "" if r["present"] else r["source"])
    con.print(t)
    con.print(f"{missing} required file(s) missing" if missing else "all required files present")
    return 2 if missing else 0
