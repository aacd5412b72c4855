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
    from ..model.validate import allow_suspicious_adapters

    # the same validator as run / predict; NaN/inf values and rank mismatches are described, not refused
    with allow_suspicious_adapters(args.allow_suspicious_adapter):
        info = read_checkpoint(args.ckpt, trust=args.trust_checkpoint, check_values=False)
    d = describe(info)
    bad = nonfinite_tensors(info.tensors)
    d["nonfinite_tensors"] = [k for k, _ in bad]
    if args.json:
        from .common import print_json

        print_json("checkpoint", 1, d)
        return 0
    _print_table(d, bad)
    return 0


def _print_table(d: dict, bad: list) -> None:
    """The description, every value whole (sha256, LoRA targets, key mapping): a two-column table that
    wraps at a terminal's width; elsewhere (a file, a pipe, a CI log) one ``field  value`` line each."""
    from rich.markup import escape
    from rich.table import Table

    from .common import stdout_console

    rows = _rows(d, bad)
    con = stdout_console()
    title = f"checkpoint {d['path']}"
    if not con.is_terminal:
        con.print(escape(title), highlight=False)
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            one_line = " ".join(part.strip() for part in v.split("\n"))
            con.print(escape(f"  {k:<{width}}  {one_line}"), highlight=False)
        return
    t = Table(title=escape(title), show_header=False, title_justify="left")
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for k, v in rows:
        t.add_row(k, escape(v))
    con.print(t)


def _rows(d: dict, bad: list) -> list[tuple[str, str]]:
    from ..model.validate import METADATA_KEY

    rows = [
        ("format", f"{d['format']} ({d['layout']})"),
        ("sha256", d["sha256"]),
        (
            "tensors",
            f"{d['tensors']} ({d['distinct_after_mapping']} distinct after mapping, "
            f"{d['alias_duplicates']} alias duplicates, {len(d['ignored_keys'])} ignored)",
        ),
        ("parameters", f"{d['parameters_total']:,} (LoRA {d['lora_parameters']:,})"),
        ("groups", ", ".join(f"{k}: {v}" for k, v in d["groups"].items())),
    ]
    lora = d["lora"]
    if lora:
        rows.append(
            (
                "LoRA",
                f"r={lora['r']} alpha={lora['alpha']} scaling={lora['scaling']:.4g} "
                f"dropout={lora['dropout']} (settings: {lora['source']})",
            )
        )
        rows.append(("LoRA targets", str(lora["target_modules"])))
    rows.append(
        ("LoRA modules", f"{d['lora_modules']}: " + ", ".join(f"{k}×{v}" for k, v in d["lora_module_kinds"].items()))
    )
    if bad:
        rows.append(
            (
                "NON-FINITE",
                f"{len(bad)} tensors hold NaN/inf values (e.g. {bad[0][0]}): `run` refuses this "
                "checkpoint without --allow-nonfinite",
            )
        )
    for problem in d["metadata"].get(METADATA_KEY, []):
        rows.append(("SUSPICIOUS", f"{problem} (`run` refuses it without --allow-suspicious-adapter)"))
    if d["vocab_size"]:
        rows.append(("embedding rows", str(d["vocab_size"])))
    rows.append(("decoder layers", str(d["decoder_layers_attr"])))
    if d["metadata"]:
        rows.append(("metadata", json.dumps(d["metadata"], default=str)[:400]))
    for k, v in d["key_mapping_examples"]:
        rows.append(("key", f"{k}\n  -> {v if v is not None else '(ignored)'}"))
    return rows
