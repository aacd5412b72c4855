"""``mmgpt-eval tasks``: the available tasks, their aliases, templates and a one-line description
(``--json``: the same as one JSON document)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_json_flag, print_json, stdout_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the available tasks", description=__doc__)
    p.add_argument("--include-path", action="append", default=[], metavar="DIR", help="extra task plugin folder")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..taskregistry import discover

    tasks = discover(args.include_path)
    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "aliases": list(tasks[name].aliases),
            "templates": list(tasks[name].templates),
            "description": tasks[name].description,
        }
        for name in sorted(tasks)
    ]
    if args.json:
        print_json("tasks", 1, {"tasks": rows})
        return 0
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="mmgpt-eval tasks", title_justify="left")
    for col in ("task", "aliases", "templates", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], ", ".join(r["aliases"]), ", ".join(r["templates"]), escape(r["description"]))
    con = stdout_console()
    if con.is_terminal:
        con.width = max(120, con.width)
    con.print(t)
    return 0
