"""Argument groups shared by the commands that load a model or generate."""

from __future__ import annotations

import argparse
import re
from typing import Any, Callable

from ..errors import UserError
from ..generation_settings import GenerationSettings, check_value
from ..io import check_output_dir, check_output_file

_DEVICE_RE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def device_arg(value: str) -> str:
    """cpu, cuda, cuda:N, mps or auto (checked before anything loads)."""
    if not _DEVICE_RE.match(value):
        raise argparse.ArgumentTypeError(f"unknown device {value!r}: use cpu, cuda, cuda:N, mps or auto")
    return value


def int_arg(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{what}, got {n}")
        return n
    parse.__name__ = f"int>={minimum}"
    return parse


def generation_arg(field: str) -> Callable[[str], Any]:
    """An argparse type for a GenerationSettings field: its type and range as declared there."""
    def parse(value: str) -> Any:
        try:
            return check_value(field, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = field
    return parse


def _checked_by(check: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse type from an io check (its UserError becomes the flag's error)."""
    def parse(value: str) -> str:
        try:
            check(value)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value
    parse.__name__ = check.__name__
    return parse


# a results folder (not an existing file, nor below one) / an output file (not a directory): before anything loads
output_dir_arg = _checked_by(check_output_dir)
output_file_arg = _checked_by(check_output_file)

def add_model_args(p: argparse.ArgumentParser, model_required: bool = False, default_model: str | None = None) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=model_required, default=default_model, metavar="SPEC",
                   help="preset name (tiny, mmgpt-9b-v0, openflamingo-9b-mpt7b) or a model-spec TOML file")
    g.add_argument("--ckpt", default=None, metavar="PATH",
                   help="checkpoint to load onto the base model: MultiModal-GPT .pt, PEFT adapter folder, "
                        "or OpenFlamingo checkpoint.pt")
    g.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda, cuda:N, mps or auto (default: the spec's)")
    g.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                   help="override the spec's precision")
    g.add_argument("--allow-partial", action="store_true",
                   help="evaluate even if some adapter / cross-attention tensors did not load (loud warning)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary unpickling of checkpoints (runs code from the file!)")
    g.add_argument("--lora-alpha", type=float, default=None,
                   help="LoRA alpha for checkpoints that do not store it")
    g.add_argument("--allow-nonfinite", action="store_true",
                   help="load checkpoints that hold NaN/inf values (loud warning; outputs are likely garbage)")


def batch_size_arg(value: str) -> int:
    """``auto`` -> 0 (the generator starts large and backs off on out-of-memory), else a positive int."""
    if value == "auto":
        return 0
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("--batch-size must be at least 1 (or 'auto')")
    return n


def add_generation_args(p: argparse.ArgumentParser, defaults: GenerationSettings | None = None) -> None:
    d = defaults or GenerationSettings()
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=generation_arg("max_new_tokens"), default=None,
                   help=f"(default {d.max_new_tokens})")
    g.add_argument("--num-beams", type=generation_arg("num_beams"), default=None, help=f"(default {d.num_beams})")
    g.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy/beam search")
    g.add_argument("--temperature", type=generation_arg("temperature"), default=None,
                   help="sampling temperature (> 0 with --do-sample)")
    g.add_argument("--top-k", type=generation_arg("top_k"), default=None, help="top-k filter (0: none)")
    g.add_argument("--top-p", type=generation_arg("top_p"), default=None, help="nucleus sampling, 0 < p <= 1")
    g.add_argument("--no-cache", action="store_true", help="disable the KV cache (slower; for checks)")
    g.add_argument("--no-share-prefix", action="store_true",
                   help="recompute the prompt prefix a batch shares in every row (slower; for checks)")
    g.add_argument("--seed", type=int, default=0, help="random seed (sampling, few-shot demos)")
    g.add_argument("--batch-size", type=batch_size_arg, default=8,
                   help="rows per batch, or 'auto': start large and halve on out-of-memory (default 8)")


def generation_settings(args: argparse.Namespace, base: GenerationSettings | None = None) -> GenerationSettings:
    s = GenerationSettings(**(base or GenerationSettings()).to_dict())
    for flag, attr in (("max_new_tokens", "max_new_tokens"), ("num_beams", "num_beams"),
                       ("do_sample", "do_sample"), ("temperature", "temperature"), ("top_k", "top_k"),
                       ("top_p", "top_p")):
        v = getattr(args, flag, None)
        if v is not None:
            setattr(s, attr, v)
    if getattr(args, "no_cache", False):
        s.use_cache = False
    s.seed = getattr(args, "seed", None) or 0
    return s.validate("generation flags")


def check_sampling_flags(args: argparse.Namespace) -> None:
    """Flag combinations a single argparse type cannot see (before anything loads)."""
    if getattr(args, "do_sample", None) and getattr(args, "temperature", None) is not None and args.temperature <= 0:
        raise UserError(f"--temperature must be > 0 with --do-sample, got {args.temperature!r}")


def load_from_args(args: argparse.Namespace, ckpt: Any = "__args__", device: str | None = None):
    """The model (+ checkpoint) the model flags describe."""
    from ..api import LoadOptions, load

    o = LoadOptions(device=device or getattr(args, "device", None), precision=getattr(args, "precision", None),
                    allow_partial=args.allow_partial, trust_checkpoint=args.trust_checkpoint, lora_alpha=args.lora_alpha,
                    allow_nonfinite=getattr(args, "allow_nonfinite", False))
    return load(args.model, args.ckpt if ckpt == "__args__" else ckpt, o)
