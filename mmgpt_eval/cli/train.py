"""``mmgpt-eval train --config recipe.toml``: the MultiModal-GPT joint-training recipe.

One process, or ``torchrun --nproc_per_node N -m mmgpt_eval train --config ...`` (DDP; gloo on CPU,
nccl on GPU). Resumes from its own state in OUTPUT_DIR/state/ when re-run. Writes PEFT adapter
folders and MultiModal-GPT-compatible .pt files (lora mode) or an exported base model (pretrain mode),
plus metrics.jsonl (loss per step)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .common import int_arg, output_dir_arg

log = logging.getLogger("mmgpt_eval")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train LoRA adapters (MultiModal-GPT recipe) or the tiny base",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="recipe TOML (see recipes/)")
    p.add_argument("--model", default=None, help="override the recipe's base model (preset or model-spec TOML)")
    p.add_argument("--output-dir", type=output_dir_arg, default=None, help="override the recipe's output_dir")
    p.add_argument("--steps", type=int_arg(1), default=None, help="override the number of optimizer steps")
    p.add_argument("--threads", type=int_arg(1), default=None, help="torch CPU threads")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if a saved state exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.config import load_config
    from ..train.loop import run_training

    overrides = {
        "output_dir": str(Path(args.output_dir).resolve()) if args.output_dir else None,
        "steps": args.steps,
        "model": args.model,
        "threads": args.threads,
        "resume": False if args.no_resume else None,
    }
    cfg = load_config(args.config, overrides)
    result = run_training(cfg)
    log.info("training finished: %s", result)
    if cfg.eval_tasks:
        from . import main

        ck = Path(cfg.output_dir) / "final"
        if cfg.mode == "lora":
            argv = ["run", "--model", cfg.model, "--ckpt", str(ck)]
        else:
            argv = ["run", "--model", str(ck / "model.toml")]
        argv += ["--tasks", ",".join(cfg.eval_tasks), "--output-dir", str(Path(cfg.output_dir) / "eval"), "--no-report"]
        if cfg.eval_limit:
            argv += ["--limit", str(cfg.eval_limit)]
        return main(argv)
    return 0
