"""Argument groups shared by the commands that load a model or generate."""

from __future__ import annotations

import argparse
from typing import Any

from ..generation_settings import GenerationSettings

def add_model_args(p: argparse.ArgumentParser, model_required: bool = False, default_model: str | None = None) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=model_required, default=default_model, metavar="SPEC",
                   help="preset name (tiny, mmgpt-9b-v0, openflamingo-9b-mpt7b) or a model-spec TOML file")
    g.add_argument("--ckpt", default=None, metavar="PATH",
                   help="checkpoint to load onto the base model: MultiModal-GPT .pt, PEFT adapter folder, "
                        "or OpenFlamingo checkpoint.pt")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the spec's)")
    g.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                   help="override the spec's precision")
    g.add_argument("--allow-partial", action="store_true",
                   help="evaluate even if some adapter / cross-attention tensors did not load (loud warning)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary unpickling of checkpoints (runs code from the file!)")
    g.add_argument("--lora-alpha", type=float, default=None,
                   help="LoRA alpha for checkpoints that do not store it")


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
    g.add_argument("--max-new-tokens", type=int, default=None, help=f"(default {d.max_new_tokens})")
    g.add_argument("--num-beams", type=int, default=None, help=f"(default {d.num_beams})")
    g.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy/beam search")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
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
    s.seed = getattr(args, "seed", 0)
    from ..errors import UserError

    if s.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be at least 1")
    if s.num_beams < 1:
        raise UserError("--num-beams must be at least 1")
    return s


def load_from_args(args: argparse.Namespace, ckpt: Any = "__args__", device: str | None = None):
    """The model (+ checkpoint) the model flags describe."""
    from ..api import LoadOptions, load

    o = LoadOptions(device=device or getattr(args, "device", None), precision=getattr(args, "precision", None),
                    allow_partial=args.allow_partial, trust_checkpoint=args.trust_checkpoint, lora_alpha=args.lora_alpha)
    return load(args.model, args.ckpt if ckpt == "__args__" else ckpt, o)
