"""Test helpers: tiny models with random (non-zero) LoRA adapters, logits for comparisons."""

from __future__ import annotations

import torch

from mmgpt_eval.model.build import load_model
from mmgpt_eval.model.checkpoint import LoraSettings
from mmgpt_eval.model.lora import MMGPT_TARGETS, inject_lora, target_module_names
from mmgpt_eval.model.spec import load_spec
from mmgpt_eval.templates import TEMPLATES

SETTINGS = LoraSettings(r=4, alpha=8.0, dropout=0.0, target_modules=list(MMGPT_TARGETS))


def tiny(**overrides):
    return load_model(load_spec("tiny", {"device": "cpu", **overrides}))


def tiny_with_random_lora(seed: int = 1, settings: LoraSettings = SETTINGS, **overrides):
    m = tiny(**overrides)
    names = target_module_names(m.model, settings.target_modules)
    inject_lora(m.model, settings, names)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.model.named_parameters():
            if ".lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return m


def probe_inputs(m, n: int = 3):
    """A small vision batch (left padded) with distinct random images."""
    g = torch.Generator().manual_seed(0)
    qs = ["what color is the shape?", "is there a circle in the image?", "how many shapes are there?"][:n]
    enc = m.tokenizer([TEMPLATES["mmgpt"].render(question=q) for q in qs], return_tensors="pt", padding=True)
    px = torch.rand((n, 1, 1, 3, 64, 64), generator=g)
    return enc, px


def logits(m, enc, px):
    with torch.no_grad():
        return m.model(vision_x=px, lang_x=enc.input_ids, attention_mask=enc.attention_mask).logits


def plain_candidate_logprob(m, text: str, images: list, candidate: str, joint: bool = False) -> tuple[float, int]:
    """(summed log-probability, token count) of ``candidate`` after ``text``: one unbatched, uncached,
    unpadded forward over context + candidate, images as pixels -- the independent path ranking is
    checked against. ``joint``: the candidate's tokens as they come out of tokenizing text + candidate."""
    if joint:  # trailing spaces belong to the candidate (lm-evaluation-harness)
        stripped = text.rstrip(" ")
        text, candidate = stripped, text[len(stripped) :] + candidate
    ctx = m.tokenizer(text)["input_ids"]
    if joint:
        cand = m.tokenizer(text + candidate)["input_ids"][len(ctx) :]
    else:
        cand = m.tokenizer(candidate, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cand])
    px = torch.stack([m.image_processor(im) for im in images])[None, :, None] if images else None
    with torch.no_grad():
        out = m.model(vision_x=px, lang_x=ids, attention_mask=torch.ones_like(ids)).logits[0]
    lp = torch.log_softmax(out.float(), dim=-1)
    return sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(cand)), len(cand)
