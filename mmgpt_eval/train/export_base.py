"""Write a fully trained base OpenFlamingo (the tiny base) as files any model spec can load:

<dir>/model.toml                      the model spec (relative paths)
<dir>/lm/                             the plain language model (save_pretrained, safetensors)
<dir>/tokenizer/                      its tokenizer
<dir>/vision/open_clip_config.json    the vision tower config
<dir>/vision_tower.safetensors        the vision tower weights (clip.visual keys; kept outside vision/,
                                      where open_clip's local-dir loader would take it for a full CLIP)
<dir>/openflamingo_checkpoint.pt      perceiver + gated cross-attention + input embeddings (v2 layout)
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch

from ..io import atomic_write_text, atomic_writer
from ..model.build import LoadedModel


def _plain_lm_state(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    lm = loaded.model.lang_encoder
    attr = lm.decoder_layers_attr_name
    out: dict[str, torch.Tensor] = {}
    for k, v in lm.state_dict().items():
        if k.startswith(("gated_cross_attn_layers.", "old_decoder_blocks.")) or ".gated_cross_attn_layer." in k:
            continue
        k = re.sub(rf"^{re.escape(attr)}\.(\d+)\.decoder_layer\.", rf"{attr}.\1.", k)
        out[k] = v.detach().cpu().clone()
    return out


def export_base_model(loaded: LoadedModel, out_dir: str | Path) -> Path:
    from safetensors.torch import save

    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    (out / "lm").mkdir(parents=True, exist_ok=True)
    lm = loaded.model.lang_encoder
    plain = AutoModelForCausalLM.from_config(lm.config)
    missing, unexpected = plain.load_state_dict(_plain_lm_state(loaded), strict=False)
    if [m for m in missing if "inv_freq" not in m] or unexpected:
        raise RuntimeError(f"LM export mismatch: missing {missing[:3]} unexpected {unexpected[:3]}")
    plain.generation_config = lm.generation_config
    plain.save_pretrained(out / "lm", safe_serialization=True)
    loaded.tokenizer.save_pretrained(out / "tokenizer")
    spec = loaded.spec
    vdir = out / "vision"
    vdir.mkdir(exist_ok=True)
    src_vision = Path(spec.vision_encoder)
    if (src_vision / "open_clip_config.json").is_file():
        shutil.copyfile(src_vision / "open_clip_config.json", vdir / "open_clip_config.json")
    visual = {k: v.detach().cpu().contiguous().clone() for k, v in loaded.model.vision_encoder.state_dict().items()}
    with atomic_writer(out / "vision_tower.safetensors", "wb", encoding=None) as f:
        f.write(save(visual))
    of = {}
    for n, p in loaded.model.named_parameters():
        if n.startswith("perceiver.") or ".gated_cross_attn_layer." in n or n.endswith("embed_tokens.weight"):
            of[n] = p.detach().cpu().clone()
    with atomic_writer(out / "openflamingo_checkpoint.pt", "wb", encoding=None) as f:
        torch.save(of, f)
    lines = [
        f'description = "trained base OpenFlamingo exported by mmgpt-eval train (from {spec.name})"',
        'vision_encoder = "vision"',
        'vision_pretrained = "vision_tower.safetensors"',
        'lm = "lm"',
        'tokenizer = "tokenizer"',
        'openflamingo_checkpoint = "openflamingo_checkpoint.pt"',
        f"cross_attn_every_n_layers = {spec.cross_attn_every_n_layers}",
        f'flamingo_version = "{spec.flamingo_version}"',
        f"vision_quick_gelu = {str(spec.vision_quick_gelu).lower()}",
        f"vision_tokens_ln_post = {str(spec.vision_tokens_ln_post).lower()}",
        f"perceiver_depth = {spec.perceiver_depth}",
        f"perceiver_num_latents = {spec.perceiver_num_latents}",
        'precision = "fp32"',
        'device = "auto"',
    ]
    atomic_write_text(out / "model.toml", "\n".join(lines) + "\n")
    return out
