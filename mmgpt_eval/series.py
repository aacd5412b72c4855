"""Checkpoint series: ``run --ckpt 'runs/exp1/checkpoint_*.pt'`` (a glob or a folder of checkpoints)
loads the base model once and swaps adapters, evaluating every checkpoint on the same samples into
``OUTDIR/<checkpoint name>/``, then writes ``OUTDIR/series.json`` (metric vs step)."""

from __future__ import annotations

import glob
import logging
import re
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .io import atomic_write_json
from .model.build import LoadedModel
from .model.checkpoint import CheckpointInfo
from .model.lora import remove_lora
from .model.weights import attach_adapter, load_openflamingo

log = logging.getLogger("mmgpt_eval")
_STEP_RE = re.compile(r"(?:checkpoint|step|epoch)[_-]?(\d+)", re.IGNORECASE)


def _is_series_glob(arg: str) -> bool:
    return any(c in arg for c in "*?[")


def expand_checkpoints(arg: str) -> list[Path]:
    """A glob or a folder of checkpoints -> sorted list; a single checkpoint -> [it]."""
    if _is_series_glob(arg):
        found = [Path(p) for p in glob.glob(arg)]
        if not found:
            raise UserError(f"no checkpoint matches {arg!r}")
    else:
        from .model.checkpoint import resolve_checkpoint_path

        p = resolve_checkpoint_path(arg)
        if p.is_dir() and not (p / "adapter_config.json").is_file():
            found = [
                c
                for c in p.iterdir()
                if (c.suffix in (".pt", ".bin", ".safetensors") and c.is_file())
                or (c.is_dir() and (c / "adapter_config.json").is_file())
            ]
            if not found:
                raise UserError("folder holds no checkpoints (*.pt or PEFT adapter folders)", p)
        else:
            return [p]
    return sorted(found, key=lambda c: (step_of_path(c), c.name))


def step_of_path(p: Path) -> float:
    m = _STEP_RE.search(p.name)
    if m:
        return float(m.group(1))
    return float("inf") if p.stem in ("final", "final_weights") else -1.0


class CheckpointSwapper:
    """Puts one checkpoint after another onto a single loaded base model."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self._of_backup: dict[str, torch.Tensor] = {}
        self._base_reports = list(loaded.reports)  # the spec's own OpenFlamingo checkpoint

    def apply(self, info: CheckpointInfo, allow_partial: bool = False, lora_alpha: float | None = None) -> None:
        m = self.loaded.model
        remove_lora(m)
        params = dict(m.named_parameters())
        with torch.no_grad():  # undo the previous OpenFlamingo checkpoint, if any
            for k, t in self._of_backup.items():
                params[k].copy_(t)
        self._of_backup = {}
        if info.format == "openflamingo":
            self._of_backup = {
                k: p.detach().clone()
                for k, p in params.items()
                if k.startswith("perceiver.") or ".gated_cross_attn_layer." in k or "embed_tokens" in k
            }
            report = load_openflamingo(m, info, allow_partial, self.loaded.spec.tokenizer)
        else:
            report = attach_adapter(m, info, allow_partial, self.loaded.spec.tokenizer, lora_alpha=lora_alpha)
        m.to(device=self.loaded.device, dtype=self.loaded.dtype)
        m.requires_grad_(False)
        m.eval()
        self.loaded.reports = self._base_reports + [report]
        self.loaded.checkpoint = info


def write_series(out_dir: Path, entries: list[dict[str, Any]]) -> Path:
    path = out_dir / "series.json"
    atomic_write_json(path, {"schema": "mmgpt-eval/series", "schema_version": 1, "checkpoints": entries})
    return path
