"""``mmgpt-eval data check [--tasks ...] [--data-root DIR] [--json]``: per task, which data files are
present, which are missing, and where each missing file comes from (official sources; nothing is
downloaded). ``run`` refuses missing data with the same list (mmgpt_eval.datapaths.missing).
Exit code 0 when every required file is present, 2 (bad input) otherwise."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UserError
from .common import add_json_flag, print_json, stdout_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="check the data root (what is present / missing / where to get it)", description=__doc__
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="report present and missing data files per task", description=__doc__)
    c.add_argument("--tasks", default=None, help="comma-separated (default: every task that reads data files)")
    c.add_argument("--data-root", default=None, help="data root (default $MMGPT_EVAL_DATA or ~/.cache/mmgpt-eval/data)")
    c.add_argument("--include-path", action="append", default=[], metavar="DIR")
    add_json_flag(c)
    c.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run(args: argparse.Namespace) -> int:
    from ..datapaths import check, data_root, missing
    from ..taskregistry import discover, resolve

    tasks = discover(args.include_path)
    root = data_root(args.data_root)
    names = resolve(args.tasks.split(","), tasks) if args.tasks else sorted(tasks)
    rows: list[dict[str, Any]] = []
    instances = [tasks[n]() for n in names]
    for task in instances:
        found = check(task, root)
        if not found and args.tasks:
            rows.append(
                {
                    "task": task.name,
                    "option": "-",
                    "path": "(ships with mmgpt-eval)",
                    "present": True,
                    "required": True,
                    "source": "",
                    "from": "",
                }
            )
        rows.extend(found)
    absent = missing(instances, root)  # what `run` refuses, in the same words
    n_missing = sum(len(v) for v in absent.values())
    if args.json:
        print_json("data-check", 1, {"data_root": str(root), "files": rows, "missing": absent, "ok": not absent})
    else:
        _print_table(root, rows, n_missing)
    if absent:  # missing data is bad input (exit 2), as in `run`
        where = "in the JSON document" if args.json else "above"
        raise UserError(f"{n_missing} required data file(s) missing ({', '.join(absent)}; listed {where})")
    return 0


def _print_table(root, rows: list[dict[str, Any]], n_missing: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = stdout_console()
    if con.is_terminal:
        con.width = max(160, con.width)
    con.print(f"data root: {escape(str(root))}")
    t = Table(title_justify="left")
    for col in ("task", "file", "status", "path", "get it from"):
        t.add_column(col, overflow="fold")
    for r in rows:
        status = (
            "[green]present[/]" if r["present"] else ("[red]MISSING[/]" if r["required"] else "[yellow]optional[/]")
        )
        t.add_row(r["task"], r["option"], status, escape(r["path"]), "" if r["present"] else escape(r["source"]))
    con.print(t)
    con.print(f"{n_missing} required file(s) missing" if n_missing else "all required files present")
