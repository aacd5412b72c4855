"""LoRA on MMFlamingo, placed where MultiModal-GPT placed it, wired so cached generation works.

MultiModal-GPT applied ``get_peft_model`` to ``model.lang_encoder`` only. With open-flamingo 2.x that
wrapper swallows the ``_use_cached_vision_x`` flag, so cached generation ignores the image after the
first token. We inject the adapters in place (``peft.inject_adapter_in_model``) into the whole
Flamingo, restricted to modules inside ``lang_encoder`` -- the same modules MMGPT adapted (LLaMA
q/k/v/o_proj and the gated cross-attention's to_q/to_kv/to_out/ff.1/ff.3; never the Perceiver, which
sits outside ``lang_encoder``). No wrapper object exists, so every flag lands where it should.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..compat import lora_config
from .checkpoint import LoraSettings

MMGPT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "to_q", "to_kv", "to_out", "ff.1", "ff.3"]


def canonical_param_name(name: str) -> str:
    """Model-side name -> canonical name (no adapter name, no PEFT ``base_layer``)."""
    name = re.sub(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)\.[A-Za-z0-9_\-]+\.", r".\1.", name)
    return name.replace(".base_layer.", ".")


def target_module_names(model: nn.Module, targets: list[str] | str) -> list[str]:
    """Linear modules inside ``lang_encoder`` matched the way PEFT matched names relative to
    ``lang_encoder`` in MultiModal-GPT (a name equals a target or ends with ``.target``; a string
    target is a regex that must fully match the name relative to ``lang_encoder``)."""
    out = []
    for name, mod in model.named_modules():
        if not name.startswith("lang_encoder.") or not isinstance(mod, nn.Linear):
            continue
        rel = name[len("lang_encoder.") :]
        if isinstance(targets, str):
            ok = re.fullmatch(targets, rel) is not None or re.fullmatch(targets, name) is not None
        else:
            ok = any(rel == t or rel.endswith("." + t) for t in targets)
        if ok:
            out.append(name)
    return out


def inject_lora(
    model: nn.Module,
    settings: LoraSettings,
    module_names: list[str],
    module_ranks: dict[str, int] | None = None,
    module_alphas: dict[str, float] | None = None,
) -> None:
    """Add LoRA adapters (named ``default``) to exactly ``module_names``."""
    from peft import inject_adapter_in_model

    if not module_names:
        raise ValueError("no modules to adapt")
    rank_pattern = {re.escape(m): r for m, r in (module_ranks or {}).items() if r != settings.r}
    alpha_pattern = {re.escape(m): a for m, a in (module_alphas or {}).items() if a != settings.alpha}
    cfg = lora_config(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=sorted(module_names),
        bias="none",
        use_rslora=settings.use_rslora,
        use_dora=settings.use_dora,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
    )
    inject_adapter_in_model(cfg, model)
    # peft marks adapters trainable; evaluation needs nothing trainable.
    for p in model.parameters():
        p.requires_grad_(False)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Canonical LoRA tensors of the model (each module once, aliases excluded)."""
    return {canonical_param_name(n): p.detach() for n, p in model.named_parameters() if ".lora_" in n}


def lora_modules(model: nn.Module) -> list[str]:
    from peft.tuners.lora import LoraLayer

    return [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def remove_lora(model: nn.Module) -> None:
    """Strip every LoRA layer, restoring the original Linear modules (for adapter swaps)."""
    from peft.tuners.lora import LoraLayer

    for name, mod in list(model.named_modules()):
        if isinstance(mod, LoraLayer):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.get_base_layer())
