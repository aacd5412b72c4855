"""Putting checkpoint tensors into a model, with a full report and no silent partial loads."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .checkpoint import CheckpointInfo, LoraSettings, canonical_key, is_lora_key, module_of
from .lora import canonical_param_name, inject_lora
from .validate import check_casts, check_settings


@dataclass
class LoadReport:
    source: str
    kind: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    alias_duplicates: int = 0
    notes: list[str] = field(default_factory=list)
    partial_allowed: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def summary(self) -> str:
        s = (
            f"{self.kind} {self.source}: matched {len(self.matched)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape mismatches {len(self.shape_mismatch)}"
        )
        if self.alias_duplicates:
            s += f", alias duplicates {self.alias_duplicates}"
        if self.ignored:
            s += f", ignored {len(self.ignored)}"
        return s

    def problems(self, limit: int = 3) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (e.g. {', '.join(self.missing[:limit])})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (e.g. {', '.join(self.unexpected[:limit])})")
        if self.shape_mismatch:
            ex = ", ".join(f"{k} {a} vs model {b}" for k, a, b in self.shape_mismatch[:limit])
            parts.append(f"{len(self.shape_mismatch)} shape mismatches (e.g. {ex})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "matched": len(self.matched),
            "missing": self.missing,
            "unexpected": self.unexpected,
            "shape_mismatch": [{"key": k, "checkpoint": a, "model": b} for k, a, b in self.shape_mismatch],
            "ignored": self.ignored,
            "alias_duplicates": self.alias_duplicates,
            "notes": self.notes,
            "ok": self.ok,
            "partial_allowed": self.partial_allowed,
        }


class ParamIndex:
    """Canonical name -> parameter/buffer of a model (aliases collapsed to the first path)."""

    def __init__(self, model: nn.Module):
        self.tensors: dict[str, torch.Tensor] = {}
        for n, p in model.named_parameters():
            self.tensors.setdefault(canonical_param_name(n), p)
        for n, b in model.named_buffers():
            self.tensors.setdefault(canonical_param_name(n), b)

    def group(self, pred) -> list[str]:
        return [k for k in self.tensors if pred(k)]


def _is_embedding(key: str) -> bool:
    return key.endswith(("embed_tokens.weight", ".wte.weight", "embed_in.weight"))


def _check_vocab(report_src: str, canon: str, tensor: torch.Tensor, target: torch.Tensor, tokenizer_name: str) -> None:
    if (
        _is_embedding(canon)
        and tensor.ndim == 2
        and target.ndim == 2
        and tensor.shape[0] != target.shape[0]
        and tensor.shape[1] == target.shape[1]
    ):
        raise UserError(
            f"vocabulary size mismatch: the checkpoint's embeddings have {tensor.shape[0]} rows but the model "
            f"built from tokenizer {tokenizer_name} has {target.shape[0]} (e.g. a tokenizer that already had a "
            f"pad token gives 32002 instead of 32003); use the tokenizer the checkpoint was trained with",
            report_src,
        )


def _map(info: CheckpointInfo, decoder_attr: str, report: LoadReport) -> dict[str, torch.Tensor]:
    """Checkpoint tensors by canonical name; alias copies must agree."""
    out: dict[str, torch.Tensor] = {}
    v1_full_clip = any(k.startswith(("vision_encoder.visual.", "module.vision_encoder.visual.")) for k in info.tensors)
    for k, t in info.tensors.items():
        c = canonical_key(k, decoder_attr)
        if c is None:
            report.ignored.append(k)
            continue
        if v1_full_clip and c.startswith("vision_encoder.") and not _strip_visual(k):
            report.ignored.append(k)  # CLIP text tower stored by the v1 Flamingo, unused
            continue
        if c in out:
            if out[c].shape != t.shape or not torch.equal(out[c], t):
                raise UserError(f"checkpoint holds two different tensors for {c} (alias keys disagree)", info.path)
            report.alias_duplicates += 1
            continue
        out[c] = t
    return out


def _strip_visual(key: str) -> bool:
    return ".visual." in "." + key


def _copy(report: LoadReport, index: ParamIndex, tensors: dict[str, torch.Tensor], tokenizer_name: str) -> None:
    casts = [
        (c, t, target)
        for c, t in tensors.items()
        if (target := index.tensors.get(c)) is not None
        and tuple(t.shape) == tuple(target.shape)
        and target.is_floating_point()
        and not t.is_floating_point()
    ]
    accepted = check_casts(casts, report.source)  # refused unless --allow-suspicious-adapter
    if accepted:
        report.notes.append(accepted)
    with torch.no_grad():
        for c, t in tensors.items():
            target = index.tensors.get(c)
            if target is None:
                report.unexpected.append(c)
                continue
            if tuple(t.shape) != tuple(target.shape):
                _check_vocab(report.source, c, t, target, tokenizer_name)
                report.shape_mismatch.append((c, list(t.shape), list(target.shape)))
                continue
            target.copy_(t.to(dtype=target.dtype, device=target.device))
            report.matched.append(c)


def _finish(report: LoadReport, allow_partial: bool) -> LoadReport:
    if not report.ok:
        if not allow_partial:
            raise UserError(
                f"{report.kind} did not load completely: {report.problems()}. Refusing to evaluate a partially "
                f"loaded model; pass --allow-partial to override (not recommended)",
                report.source,
            )
        report.partial_allowed = True
    return report


def load_openflamingo(
    model: nn.Module, info: CheckpointInfo, allow_partial: bool = False, tokenizer_name: str = ""
) -> LoadReport:
    """Load OpenFlamingo weights (perceiver + gated cross-attention, maybe embeddings)."""
    decoder_attr = model.lang_encoder.decoder_layers_attr_name
    report = LoadReport(info.path, f"OpenFlamingo checkpoint ({info.layout} layout)")
    tensors = _map(info, decoder_attr, report)
    index = ParamIndex(model)
    _copy(report, index, tensors, tokenizer_name)
    expected = index.group(
        lambda k: (k.startswith("perceiver.") or ".gated_cross_attn_layer." in k) and ".lora_" not in k
    )
    loaded = set(report.matched)
    report.missing = [k for k in expected if k not in loaded]
    if not any(_is_embedding(k) for k in loaded):
        report.notes.append("no input embeddings in the checkpoint: the language model's own are used")
    return _finish(report, allow_partial)


def attach_adapter(
    model: nn.Module,
    info: CheckpointInfo,
    allow_partial: bool = False,
    tokenizer_name: str = "",
    lora_alpha: float | None = None,
) -> LoadReport:
    """Inject LoRA as the checkpoint describes and load its tensors (plus any other trained ones)."""
    decoder_attr = model.lang_encoder.decoder_layers_attr_name
    report = LoadReport(info.path, f"adapter ({info.format})")
    tensors = _map(info, decoder_attr, report)
    lora_t = {k: v for k, v in tensors.items() if is_lora_key(k)}
    other_t = {k: v for k, v in tensors.items() if not is_lora_key(k)}
    modules = dict(model.named_modules())
    if lora_t:
        settings = info.lora or LoraSettings(r=0, alpha=float("nan"))
        if lora_alpha is not None:
            settings = LoraSettings(
                **{**settings.__dict__, "alpha": float(lora_alpha), "source": "--lora-alpha on the command line"}
            )
        if lora_alpha is None and (settings.alpha is None or math.isnan(settings.alpha)):
            raise UserError(
                "the checkpoint stores LoRA tensors but no LoRA alpha (scaling); pass --lora-alpha "
                "with the value it was trained with",
                info.path,
            )
        names = sorted({module_of(k) for k in lora_t})
        present = [n for n in names if isinstance(modules.get(n), nn.Linear)]
        ranks = {n: int(lora_t[n + ".lora_A.weight"].shape[0]) for n in present if n + ".lora_A.weight" in lora_t}
        if ranks:
            common = max(set(ranks.values()), key=list(ranks.values()).count)
            settings = LoraSettings(**{**settings.__dict__, "r": common})
        if lora_alpha is not None:
            check_settings(settings, info)  # the stored settings were checked when the checkpoint was read
        alphas = _pattern_values(settings.alpha_pattern, present, info, decoder_attr) if settings.alpha_pattern else {}
        outside = [n for n in present if not n.startswith("lang_encoder.")]
        if outside:
            report.notes.append(
                f"{len(outside)} adapted modules lie outside the language model (e.g. {outside[0]}): loaded as stored"
            )
        if present:
            inject_lora(model, settings, present, module_ranks=ranks, module_alphas=alphas)
        info.lora = settings
    index = ParamIndex(model)
    _copy(report, index, lora_t, tokenizer_name)
    _copy(report, index, other_t, tokenizer_name)
    expected = index.group(lambda k: ".lora_" in k)
    loaded = set(report.matched)
    report.missing = [k for k in expected if k not in loaded]
    if not lora_t:
        report.notes.append("no LoRA tensors in the checkpoint")
    return _finish(report, allow_partial)


def _pattern_values(pattern: dict[str, float], modules: list[str], info: CheckpointInfo, decoder_attr: str) -> dict:
    """PEFT alpha_pattern keys are regexes over the *original* module names; evaluate them there."""
    originals: dict[str, str] = {}
    for k in info.tensors:
        c = canonical_key(k, decoder_attr)
        if c and is_lora_key(c):
            originals.setdefault(module_of(c), re.sub(r"\.(lora_[AB])(\.[^.]+)?\.weight$", "", k))
    out = {}
    for m in modules:
        orig = originals.get(m, m)
        for pat, val in pattern.items():
            if re.match(rf"(.*\.)?({pat})$", orig):
                out[m] = float(val)
                break
    return out
