"""``mmgpt-eval inspect CKPT``: what a checkpoint holds, without building a base model."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="describe a checkpoint (format, LoRA settings, key mapping) without a model")
    p.add_argument("ckpt", help="checkpoint file or PEFT adapter folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--trust-checkpoint", action="store_true", help="allow arbitrary unpickling (runs code from the file!)"
    )
    p.add_argument(
        "--allow-suspicious-adapter",
        action="store_true",
        help="describe an adapter the checkpoint validator refuses as suspicious (the problems are listed)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model.checkpoint import describe, nonfinite_tensors, read_checkpoint
    from ..model.validate import METADATA_KEY, allow_suspicious_adapters

    # the same validator as run / predict; NaN/inf values and rank mismatches are described, not refused
    with allow_suspicious_adapters(args.allow_suspicious_adapter):
        info = read_checkpoint(args.ckpt, trust=args.trust_checkpoint, check_values=False)
    d = describe(info)
    bad = nonfinite_tensors(info.tensors)
    d["nonfinite_tensors"] = [k for k, _ in bad]
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"checkpoint {d['path']}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("format", f"{d['format']} ({d['layout']})")
    t.add_row("sha256", d["sha256"])
    t.add_row(
        "tensors",
        f"{d['tensors']} ({d['distinct_after_mapping']} distinct after mapping, "
        f"{d['alias_duplicates']} alias duplicates, {len(d['ignored_keys'])} ignored)",
    )
    t.add_row("parameters", f"{d['parameters_total']:,} (LoRA {d['lora_parameters']:,})")
    t.add_row("groups", ", ".join(f"{k}: {v}" for k, v in d["groups"].items()))
    lora = d["lora"]
    if lora:
        t.add_row(
            "LoRA",
            f"r={lora['r']} alpha={lora['alpha']} scaling={lora['scaling']:.4g} "
            f"dropout={lora['dropout']} (settings: {lora['source']})",
        )
        t.add_row("LoRA targets", str(lora["target_modules"]))
    t.add_row(
        "LoRA modules", f"{d['lora_modules']}: " + ", ".join(f"{k}×{v}" for k, v in d["lora_module_kinds"].items())
    )
    if bad:
        t.add_row(
            "NON-FINITE",
            f"{len(bad)} tensors hold NaN/inf values (e.g. {bad[0][0]}): `run` refuses this "
            "checkpoint without --allow-nonfinite",
        )
    for problem in d["metadata"].get(METADATA_KEY, []):
        t.add_row("SUSPICIOUS", f"{problem} (`run` refuses it without --allow-suspicious-adapter)")
    if d["vocab_size"]:
        t.add_row("embedding rows", str(d["vocab_size"]))
    t.add_row("decoder layers", d["decoder_layers_attr"])
    if d["metadata"]:
        t.add_row("metadata", json.dumps(d["metadata"], default=str)[:400])
    for k, v in d["key_mapping_examples"]:
        t.add_row("key", f"{k}\n  -> {v if v is not None else '(ignored)'}")
    con.print(t)
    return 0
