"""Argument groups shared by the commands that load a model or generate."""

from __future__ import annotations

import argparse
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
]


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
