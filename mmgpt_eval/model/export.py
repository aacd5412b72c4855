"""Writing adapters in the formats the loader reads: PEFT folders and MultiModal-GPT ``.pt`` files.

Both carry our model spec, so ``--ckpt`` alone can rebuild the base the adapter was trained on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_writer, atomic_write_json
from .checkpoint import LoraSettings, adapter_config_json, module_of
from .lora import lora_state_dict


def _mmgpt_key(canonical: str, ddp: bool) -> str:
    """``lang_encoder.X.lora_A.weight`` -> MultiModal-GPT's
    ``[module.]lang_encoder.base_model.model.X.lora_A.default.weight``."""
    k = canonical
    if k.startswith("lang_encoder."):
        k = "lang_encoder.base_model.model." + k[len("lang_encoder.") :]
    k = re.sub(r"\.(lora_[AB])\.weight$", r".\1.default.weight", k)
    return ("module." + k) if ddp else k


def mmgpt_tuning_config(settings: LoraSettings, targets: list[str] | None = None) -> dict[str, Any]:
    return {
        "lora": True,
        "lora_target_modules": list(targets or settings.target_modules or []),
        "lora_r": settings.r,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.dropout,
        "vis": False,
        "unfrozen": [],
    }


def save_mmgpt_checkpoint(
    model: nn.Module,
    settings: LoraSettings,
    path: str | os.PathLike,
    *,
    kind: str = "trainer",
    epoch: int = 0,
    step: int | None = None,
    optimizer_state: dict | None = None,
    scheduler_state: dict | None = None,
    model_spec: dict | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``kind``: ``trainer`` (checkpoint_N.pt, DDP ``module.`` keys), ``final`` (final_weights.pt, no prefix)."""
    sd = lora_state_dict(model)
    ddp = kind == "trainer"
    obj: dict[str, Any] = {
        "model_state_dict": {_mmgpt_key(k, ddp): v.detach().cpu().clone() for k, v in sd.items()},
        "tuning_config": mmgpt_tuning_config(settings),
    }
    if kind == "trainer":
        obj.update(
            epoch=epoch, optimizer_state_dict=optimizer_state or {}, lr_scheduler_state_dict=scheduler_state or {}
        )
    if step is not None:
        obj["step"] = step
    if model_spec is not None:
        obj["model_spec"] = model_spec
    if extra:
        obj.update(extra)
    path = Path(path)
    with atomic_writer(path, "wb", encoding=None) as f:
        torch.save(obj, f)
    return path


def save_peft_adapter(
    model: nn.Module,
    settings: LoraSettings,
    out_dir: str | os.PathLike,
    *,
    model_spec: dict | None = None,
    base_name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) keyed on the whole
    Flamingo (``base_model.model.lang_encoder....``), plus ``mmgpt_eval.json`` with our metadata."""
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = lora_state_dict(model)
    tensors = {"base_model.model." + k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}
    modules = sorted({module_of(k) for k in sd})
    with atomic_writer(out / "adapter_model.safetensors", "wb", encoding=None) as f:
        f.write(save(tensors, metadata={"format": "pt"}))
    atomic_write_json(out / "adapter_config.json", adapter_config_json(settings, modules, base_name))
    meta = {"format": "mmgpt-eval-peft", "model_spec": model_spec, **(extra or {})}
    atomic_write_json(out / "mmgpt_eval.json", meta)
    return out
