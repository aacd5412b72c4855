"""The ``mmgpt-eval`` command line. Each sub-command lives in its own module of this package and
exposes ``register(subparsers)``; user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys

from ..version import __version__
from ..errors import UserError

# Sub-command modules, in the order ``--help`` lists them (inspect_cmd: the `inspect` command;
# a module named inspect would shadow the standard library inside this package).
COMMANDS = ["run", "predict", "score", "tasks", "inspect_cmd", "compare", "report", "gate", "train", "bench", "data"]


def _setup_logging(verbosity: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbosity < 0 else (logging.INFO if verbosity == 0 else logging.DEBUG)
    handler = RichHandler(show_path=False, show_time=False, markup=False, rich_tracebacks=False)
    root = logging.getLogger("mmgpt_eval")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # third-party chatter (transformers "Loading weights" bars, open_clip info) stays quiet
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - logging setup must never fail the command
        pass


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmgpt-eval",
        description="Evaluate MultiModal-GPT-style models (OpenFlamingo + LoRA): tasks, metrics, reports, gates.",
    )
    parser.add_argument("--version", action="version", version=f"mmgpt-eval {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name}")
        if "argv" in inspect.signature(mod.register).parameters:
            mod.register(sub, argv=argv)  # commands whose flags depend on --include-path
        else:
            mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        rc = args.func(args)
    except UserError as e:
        print(f"mmgpt-eval: error: {e}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("mmgpt-eval: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def entry() -> None:  # pragma: no cover
    sys.exit(main())
