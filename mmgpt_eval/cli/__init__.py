"""The ``mmgpt-eval`` command line. Each sub-command lives in its own module of this package and
exposes ``register(subparsers)``. Further sub-commands come from installed distributions through the
entry-point group ``mmgpt_eval.commands`` (name = the command, value = its ``register`` function):
``bench`` is one, from the development package ``mmgpt_eval_dev``, which this package never imports.

Exit codes (:func:`main`), the contract CI relies on:

* 0 -- success;
* 1 -- ONLY a gate regression (``mmgpt-eval gate``: a rule failed); no other path returns 1;
* 2 -- bad input: every known failure -- a :class:`UserError`, a bad flag, a file the user named that
  cannot be read or written (OSError), undecodable text, malformed, too large or too deeply nested
  TOML/JSON -- is ONE line on stderr (``mmgpt-eval: error: ...``), without a traceback;
* 3 -- internal error: anything else is a bug; the traceback is printed, followed by one line saying so
  and where to report it (:data:`INTERNAL_ERROR`);
* 130 -- interrupted (Ctrl-C).

Log messages go to stderr; results tables and the paths of written files go to stdout."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import sys
import traceback

from ..version import __version__
from ..errors import UserError, missing_package_error

# Sub-command modules, in the order ``--help`` lists them (inspect_cmd: the `inspect` command;
# a module named inspect would shadow the standard library inside this package).
COMMANDS = [
    "run",
    "predict",
    "score",
    "tasks",
    "inspect_cmd",
    "compare",
    "judge",
    "report",
    "gate",
    "train",
    "data",
    "export",
    "serve",
]
# entry-point group of sub-commands that live outside this package (listed after the built-in ones)
COMMAND_GROUP = "mmgpt_eval.commands"


#: the exit code of an internal error (a bug); never 1, which is the gate's "regression"
INTERNAL_ERROR = 3
BUG_REPORT = "the mmgpt-eval issue tracker (include the command line and the traceback above)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad flag raises :class:`UserError` (``main`` prints it as
    ``mmgpt-eval: error: ...`` and exits 2) instead of printing the usage and calling ``sys.exit``.
    Sub-command parsers inherit it (``add_subparsers`` uses the parent's class)."""

    def error(self, message: str):  # type: ignore[override]
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f" (see `{self.prog} --help`)"
        raise UserError(f"{sub + ': ' if sub else ''}{message}{hint}")


class _StderrHandler(logging.StreamHandler):
    """Plain log lines on whatever ``sys.stderr`` is when a record is written (tests and callers may swap
    it): one line per message, never wrapped, so a path in a message stays whole in a CI log."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def _setup_logging(verbosity: int) -> None:
    from ..progress import quiet_third_party_progress, stderr_is_terminal

    level = logging.WARNING if verbosity < 0 else (logging.INFO if verbosity == 0 else logging.DEBUG)
    # logs go to stderr: stdout carries results tables and paths only. On a terminal, rich's handler;
    # elsewhere (a file, a pipe, a CI log) plain lines, which rich would wrap at 80 columns mid-path.
    handler: logging.Handler
    if stderr_is_terminal():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(stderr=True), show_path=False, show_time=False, markup=False, rich_tracebacks=False
        )
    else:
        handler = _StderrHandler()
    root = logging.getLogger("mmgpt_eval")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # third-party chatter (transformers "Loading weights" bars, open_clip info) stays quiet for the
    # whole command; mmgpt-eval's own progress bars (--no-progress) are separate
    quiet_third_party_progress()


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="mmgpt-eval",
        description="Evaluate MultiModal-GPT-style models (OpenFlamingo + LoRA): tasks, metrics, reports, gates.",
    )
    parser.add_argument("--version", action="version", version=f"mmgpt-eval {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        _register(importlib.import_module(f"{__name__}.{name}").register, sub, argv)
    for register in plugin_commands().values():
        _register(register, sub, argv)
    return parser


def _register(register, sub: argparse._SubParsersAction, argv: list[str] | None) -> None:
    if "argv" in inspect.signature(register).parameters:
        register(sub, argv=argv)  # commands whose flags depend on --include-path
    else:
        register(sub)


def plugin_commands() -> dict[str, object]:
    """Command name -> ``register`` function of each installed ``mmgpt_eval.commands`` entry point, in
    name order. A name that a built-in command already uses, or one whose code fails to import, is left
    out with a warning on stderr: a broken plug-in must not take the other commands down."""
    from importlib.metadata import entry_points

    builtin = {"inspect" if n == "inspect_cmd" else n for n in COMMANDS}
    out: dict[str, object] = {}
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        if ep.name in builtin or ep.name in out:
            print(
                f"mmgpt-eval: warning: command {ep.name!r} from {ep.value} is already defined; ignored", file=sys.stderr
            )
            continue
        try:
            out[ep.name] = ep.load()
        except Exception as e:  # noqa: BLE001 - see the docstring
            print(
                f"mmgpt-eval: warning: command {ep.name!r} ({ep.value}) could not be loaded: "
                f"{type(e).__name__}: {_one_line(str(e))}",
                file=sys.stderr,
            )
    return out


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _user_error_message(e: BaseException) -> str | None:
    """The one-line message for a known failure, or None for a bug."""
    from ..io import tomllib

    if isinstance(e, UserError):
        return _one_line(str(e))
    if isinstance(e, ModuleNotFoundError):  # a known package missing from the environment (not a bug)
        known = missing_package_error(e)
        return _one_line(str(known)) if known is not None else None
    if isinstance(e, UnicodeDecodeError):
        return _one_line(f"a file is not UTF-8 text ({e.reason} at byte {e.start})")
    if isinstance(e, tomllib.TOMLDecodeError):
        return _one_line(f"malformed TOML: {e}")
    if isinstance(e, json.JSONDecodeError):
        return _one_line(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}")
    if isinstance(e, OSError) and getattr(e, "filename", None) is not None:
        # a file or folder named by the user (or derived from one) that cannot be read or written
        what = {
            IsADirectoryError: "is a directory",
            NotADirectoryError: "a parent is not a directory",
            FileNotFoundError: "not found",
            PermissionError: "permission denied",
            FileExistsError: "already exists",
        }.get(type(e), e.strerror or type(e).__name__)
        return _one_line(f"{e.filename}: {what}")
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 a gate regression, 2 bad input, 3 a bug, 130
    interrupted; see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help / --version
            return int(e.code or 0) if not isinstance(e.code, str) else 2
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        _setup_logging(-1 if args.quiet else args.verbose)
        rc = args.func(args)  # --allow-nonfinite travels in LoadOptions (api.load / api.evaluate)
    except KeyboardInterrupt:
        print("mmgpt-eval: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one boundary for every command
        msg = _user_error_message(e)
        if msg is not None:
            print(f"mmgpt-eval: error: {msg}", file=sys.stderr)
            return UserError.exit_code
        traceback.print_exc()
        print(
            f"mmgpt-eval: internal error ({type(e).__name__}): this is a bug in mmgpt-eval {__version__}, not "
            f"in your input; please report it to {BUG_REPORT}",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
    return int(rc or 0)


def entry() -> None:  # pragma: no cover
    sys.exit(main())
