"""The model presets that ship with mmgpt-eval, read as data: their names, descriptions and key tables.

A preset is a TOML file in ``mmgpt_eval/model/presets/`` (``NAME.toml``); it may start from another
with ``preset = "NAME"``, and its relative paths resolve against the presets folder. This module reads
the files and nothing else (no model code, no torch), so that readers of results -- published numbers
matched by preset -- and the model layer's :mod:`mmgpt_eval.model.spec`, which turns a table into a
typed ``ModelSpec``, share one reading.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import read_toml

# Keys whose values may be local paths (resolved against the TOML file's folder).
PATH_KEYS = ("vision_encoder", "vision_pretrained", "lm", "tokenizer", "openflamingo_checkpoint")
# Spec keys that decide which base model a spec builds (the weights' locations may be local paths), and
# the value a spec has for each when its file does not set it (ModelSpec's defaults; a test keeps the two
# equal).
ARCHITECTURE_KEYS = (
    "vision_encoder",
    "vision_pretrained",
    "vision_quick_gelu",
    "vision_tokens_ln_post",
    "cross_attn_every_n_layers",
    "flamingo_version",
    "perceiver_depth",
    "perceiver_num_latents",
    "init",
)
ARCHITECTURE_DEFAULTS: dict[str, Any] = {
    "vision_encoder": "",  # text-only families (family = "causal-lm") have none
    "vision_pretrained": None,
    "vision_quick_gelu": False,
    "vision_tokens_ln_post": False,
    "cross_attn_every_n_layers": 1,
    "flamingo_version": "v2",
    "perceiver_depth": 6,
    "perceiver_num_latents": 64,
    "init": "pretrained",
}


def presets_dir() -> Path:
    # located through the top-level package: importing mmgpt_eval.model is not needed to read data
    return Path(str(resources.files("mmgpt_eval") / "model" / "presets"))


def list_presets() -> dict[str, str]:
    """Preset name -> one-line description."""
    out = {}
    for p in sorted(presets_dir().glob("*.toml")):
        data = read_toml(p)
        out[p.stem] = str(data.get("description", ""))
    return out


def is_local_ref(value: str, base: Path) -> Path | None:
    """A value is a local path if it looks like one or exists relative to ``base``."""
    if value.startswith(("hf://", "hf-hub:")):
        return None
    if value.startswith("local-dir:"):
        value = value[len("local-dir:") :]
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return p
    if value.startswith(("./", "../")) or (base / p).exists():
        return (base / p).resolve()
    return None


def preset_table(name: str) -> dict[str, Any]:
    """The keys a preset sets, with the presets it starts from merged in and local paths resolved."""
    path = presets_dir() / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(list_presets())
        raise UserError(f"unknown model preset {name!r}; known presets: {known}")
    data = read_toml(path)
    # resolve the preset's own relative paths against the presets folder
    for k in PATH_KEYS:
        v = data.get(k)
        if isinstance(v, str):
            local = is_local_ref(v, path.parent)
            if local is not None:
                data[k] = str(local)
    if "preset" in data:
        inner = preset_table(data.pop("preset"))
        inner.update(data)
        data = inner
    return data


def architecture(table: dict[str, Any]) -> dict[str, Any]:
    """The architecture keys of a spec table, unset ones at their defaults."""
    return {k: table.get(k, ARCHITECTURE_DEFAULTS.get(k)) for k in ARCHITECTURE_KEYS}
