"""``mmgpt-eval tasks``: the available tasks, their aliases, templates and a one-line description."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the available tasks")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR", help="extra task plugin folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..taskregistry import discover

    tasks = discover(args.include_path)
    t = Table(title="mmgpt-eval tasks", title_justify="left")
    for col in ("task", "aliases", "templates", "description"):
        t.add_column(col)
    for name in sorted(tasks):
        cls = tasks[name]
        t.add_row(name, ", ".join(cls.aliases), ", ".join(cls.templates), cls.description)
    Console(width=max(120, Console().width)).print(t)
    return 0
