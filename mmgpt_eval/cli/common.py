"""What the commands share: the argument groups of the commands that load a model or generate, and
how results reach stdout (tables sized for where stdout goes; ``--json`` documents)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..config import (
    ALL,
    add_flags,
    batch_size_arg,
    device_arg,
    generation_arg,
    int_arg,
    limit_arg,
    output_dir_arg,
    output_file_arg,
    settings,
)
from ..generation_settings import GenerationSettings

# the argparse types live with the settings they check (mmgpt_eval.config); other commands use them too
__all__ = [
    "ALL",
    "add_generation_args",
    "add_json_flag",
    "add_model_args",
    "batch_size_arg",
    "device_arg",
    "generation_arg",
    "generation_settings",
    "int_arg",
    "limit_arg",
    "load_from_args",
    "output_dir_arg",
    "output_file_arg",
    "print_json",
    "stdout_console",
]

# Width of the stdout console when stdout is not a terminal (a pipe, a file, a CI log): wide enough that
# rich never cuts a cell with "…", folds a path or wraps a line; tables take their content's width.
UNBOUNDED_WIDTH = 100_000


def stdout_console():
    """A rich Console for results on stdout: a terminal's own width; anywhere else, no width limit, so
    tables keep every cell whole (full sha256s, paths on one line) and text lines are not wrapped."""
    from rich.console import Console

    con = Console()
    if con.is_terminal:
        return con
    return Console(width=UNBOUNDED_WIDTH, soft_wrap=True)


def add_json_flag(p: argparse.ArgumentParser) -> None:
    """``--json``: the command's result as one JSON document on stdout instead of tables."""
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON document on stdout (with a "schema" key) instead of tables; logs stay on stderr',
    )


def print_json(schema: str, version: int, body: dict[str, Any]) -> None:
    """``body`` as one JSON document on stdout, versioned like results.json: ``{"schema":
    "mmgpt-eval/<schema>", "schema_version": N, ...}`` (NaN as in results.json)."""
    doc = {"schema": f"mmgpt-eval/{schema}", "schema_version": version, **body}
    sys.stdout.write(json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")


def add_model_args(
    p: argparse.ArgumentParser, model_required: bool = False, default_model: str | None = None, defaults: bool = True
) -> None:
    """The model flags (EvalConfig's ``model`` group). ``defaults=False``: every flag defaults to None
    (``run``, where a run config fills what was not given)."""
    add_flags(
        p.add_argument_group("model"),
        "model",
        defaults=defaults,
        overrides={"model": {"required": model_required, "default": default_model}},
    )


def add_generation_args(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The decoding flags and --seed / --batch-size / --no-share-prefix (EvalConfig's ``generation`` group)."""
    add_flags(p.add_argument_group("generation"), "generation", defaults=defaults)


def generation_settings(args: argparse.Namespace, base: GenerationSettings | None = None) -> GenerationSettings:
    """The decoding settings the generation flags describe, over ``base``."""
    s = GenerationSettings(**(base or GenerationSettings()).to_dict())
    for f in settings():
        fl = f.metadata["setting"].flag
        if f.metadata["setting"].run != "generation_overrides" or fl is None:
            continue
        v = getattr(args, fl.dest, None)
        if v is None or (fl.kind in ("switch", "negated") and not v):
            continue
        setattr(s, f.name, fl.to_field(v))
    s.seed = getattr(args, "seed", None) or 0
    return s.validate("generation flags")


def load_from_args(args: argparse.Namespace, ckpt: Any = "__args__", device: str | None = None):
    """The model (+ checkpoint) the model flags describe."""
    from ..api import LoadOptions, load

    o = LoadOptions(
        device=device or getattr(args, "device", None),
        precision=getattr(args, "precision", None),
        allow_partial=args.allow_partial,
        trust_checkpoint=args.trust_checkpoint,
        lora_alpha=args.lora_alpha,
        allow_nonfinite=getattr(args, "allow_nonfinite", False),
        allow_suspicious_adapter=getattr(args, "allow_suspicious_adapter", False),
    )
    return load(args.model, args.ckpt if ckpt == "__args__" else ckpt, o)
