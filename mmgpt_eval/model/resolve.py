"""``--ckpt`` without ``--model``: which base model does this checkpoint belong to?

In order:
1. a model spec stored in the checkpoint by mmgpt-eval's trainer (``model_spec`` in the ``.pt``, or
   ``mmgpt_eval.json`` in a PEFT folder): that spec (by preset name when it is one, so a moved
   checkpoint still resolves);
2. a PEFT ``adapter_config.json`` whose ``base_model_name_or_path`` names a preset or a model-spec TOML;
3. MultiModal-GPT trainer files (``tuning_config`` / MultiModal-GPT key layout) and OpenFlamingo v1
   checkpoints: the ``mmgpt-9b-v0`` preset (MultiModal-GPT v0's base, OpenFlamingo-9B v1 on LLaMA-7B);
4. anything else is ambiguous: an error asking for ``--model``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import UserError
from .checkpoint import CheckpointInfo
from .spec import ModelSpec, list_presets, load_spec

MMGPT_PRESET = "mmgpt-9b-v0"


@dataclasses.dataclass
class BaseChoice:
    spec: ModelSpec
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.spec.name, "reason": self.reason}


def _spec_from_stored(d: dict[str, Any], where: str) -> ModelSpec | None:
    if not isinstance(d, dict):
        return None
    name = d.get("name")
    if isinstance(name, str) and name in list_presets():
        return load_spec(name)
    if isinstance(name, str) and name.endswith(".toml") and Path(name).is_file():
        return load_spec(name)
    keys = set(ModelSpec.user_keys())
    try:
        spec = ModelSpec(**{k: v for k, v in d.items() if k in keys})
    except TypeError:
        return None
    for k in ("lm", "tokenizer", "vision_encoder"):
        v = getattr(spec, k)
        if isinstance(v, str) and v.startswith("/") and not Path(v).exists():
            raise UserError(
                f"the checkpoint's stored model spec points at {v}, which does not exist here; pass --model", where
            )
    spec.name, spec.source = str(name or "stored spec"), where
    return spec


def choose_base(info: CheckpointInfo) -> BaseChoice:
    meta = info.metadata or {}
    stored = meta.get("model_spec")
    if stored:
        spec = _spec_from_stored(stored, info.path)
        if spec is not None:
            return BaseChoice(spec, f"the checkpoint stores the model spec it was trained on ({spec.name})")
    base = meta.get("base_model_name_or_path")
    if isinstance(base, str) and base:
        if base in list_presets():
            return BaseChoice(load_spec(base), f"adapter_config.json names the preset {base!r} as its base")
        if base.endswith(".toml") and Path(base).is_file():
            return BaseChoice(load_spec(base), f"adapter_config.json names the model spec {base}")
    mmgpt_layout = any("lang_encoder.base_model.model." in k for k in info.tensors)
    if info.format in ("mmgpt-trainer", "mmgpt-weights") or (info.format == "mmgpt-raw" and mmgpt_layout):
        why = "tuning_config" if "tuning_config" in meta else "MultiModal-GPT key layout"
        return BaseChoice(
            load_spec(MMGPT_PRESET),
            f"MultiModal-GPT trainer checkpoint ({why}): MultiModal-GPT v0 was trained on OpenFlamingo-9B "
            f"v1 (CLIP ViT-L/14 + LLaMA-7B), the {MMGPT_PRESET} preset",
        )
    if info.format == "openflamingo" and info.layout == "v1":
        spec = load_spec(MMGPT_PRESET)
        spec.openflamingo_checkpoint = None  # the checkpoint given is the OpenFlamingo weights
        return BaseChoice(
            spec,
            f"OpenFlamingo v1 checkpoint layout: OpenFlamingo-9B v1 ({MMGPT_PRESET} without its own "
            f"OpenFlamingo checkpoint)",
        )
    raise UserError(
        f"cannot tell which base model the {info.format} checkpoint belongs to (no stored model spec, no "
        f"preset named in it); pass --model PRESET_OR_TOML",
        info.path,
    )
