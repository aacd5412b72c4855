"""Model specs: what model to build, from a preset name or a TOML file.

``family`` picks the model family (:mod:`mmgpt_eval.model.families`): ``"flamingo"`` (the default)
names the vision tower, the language model, the tokenizer, the OpenFlamingo weights and the
semantics they were trained with; ``"causal-lm"`` a text-only Hugging Face causal LM (``lm``, and
``tokenizer`` when it is not the LM's folder). Relative paths in a TOML file resolve against the
file's folder. A TOML file may start from a preset with ``preset = "NAME"`` and override keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_toml
from ..presets import PATH_KEYS, is_local_ref, preset_table
from ..presets import list_presets as list_presets  # part of this module's API

PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_FAMILY = "flamingo"
INITS = ("pretrained", "random")


@dataclass
class ModelSpec:
    """Typed model spec. Keep key names stable: they appear in users' TOML files and in results."""

    vision_encoder: str = ""
    lm: str = ""
    tokenizer: str = ""
    vision_pretrained: str | None = None
    cross_attn_every_n_layers: int = 1
    openflamingo_checkpoint: str | None = None
    flamingo_version: str = "v2"
    precision: str = "fp32"
    device: str = "auto"
    # 2023 open_clip semantics (what released OpenFlamingo / MultiModal-GPT weights were trained
    # with): patch tokens without ln_post; QuickGELU where the tower was trained with it.
    vision_quick_gelu: bool = False
    vision_tokens_ln_post: bool = False
    perceiver_depth: int = 6
    perceiver_num_latents: int = 64
    decoder_layers_attr_name: str | None = None
    # run the LM's own modelling code from its repo (MPT-7B needs it); off unless a spec says so
    trust_remote_code: bool = False
    # "random": build from configs with seeded weights (the tiny preset); "pretrained": load weights.
    init: str = "pretrained"
    seed: int = 0
    gate_init: float | None = None
    description: str = ""
    # the model family; left out of to_dict() when it is the default, so Flamingo specs describe
    # (and fingerprint) themselves as they always have
    family: str = DEFAULT_FAMILY
    # provenance, not user keys
    name: str = field(default="", metadata={"internal": True})
    source: str = field(default="", metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["family"] == DEFAULT_FAMILY:
            del d["family"]
        return d

    @classmethod
    def user_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]

    def validate(self, where: str) -> None:
        from .families import family_names

        if self.family not in family_names():
            raise UserError(f"family must be one of {', '.join(family_names())}, got {self.family!r}", where)
        if self.flamingo_version not in ("v1", "v2"):
            raise UserError(f'flamingo_version must be "v1" or "v2", got {self.flamingo_version!r}', where)
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}", where)
        if self.init not in INITS:
            raise UserError(f"init must be one of {', '.join(INITS)}, got {self.init!r}", where)
        if not isinstance(self.cross_attn_every_n_layers, int) or self.cross_attn_every_n_layers < 1:
            raise UserError("cross_attn_every_n_layers must be a positive integer", where)
        for k in ("perceiver_depth", "perceiver_num_latents"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise UserError(f"{k} must be a positive integer", where)


def _from_dict(data: dict[str, Any], base: Path, where: str, name: str) -> ModelSpec:
    data = dict(data)
    parent = data.pop("preset", None)
    merged: dict[str, Any] = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise UserError("preset must be a preset name", where)
        merged.update(preset_table(parent))
    allowed = set(ModelSpec.user_keys())
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(
            f"unknown model spec key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(allowed))}", where
        )
    for k in PATH_KEYS:
        v = data.get(k)
        if isinstance(v, str):
            local = is_local_ref(v, base)
            if local is not None:
                data[k] = str(local)
    merged.update(data)
    family = merged.get("family", DEFAULT_FAMILY)
    if family != DEFAULT_FAMILY and "lm" in merged and "tokenizer" not in merged:
        merged["tokenizer"] = merged["lm"]  # a Hugging Face folder holds its own tokenizer
    for req in ("vision_encoder", "lm", "tokenizer") if family == DEFAULT_FAMILY else ("lm",):
        if req not in merged:
            raise UserError(f"model spec is missing the required key {req!r}", where)
    try:
        spec = ModelSpec(**merged)
    except TypeError as e:  # pragma: no cover - guarded by the key check above
        raise UserError(f"bad model spec: {e}", where) from None
    spec.name = name
    spec.source = where
    spec.validate(where)
    return spec


def load_spec(ref: str | os.PathLike, overrides: dict[str, Any] | None = None) -> ModelSpec:
    """Load a spec from a preset name or a TOML path; ``overrides`` (CLI flags) win."""
    ref_s = os.fspath(ref)
    path = Path(ref_s)
    if ref_s.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise UserError("model spec file not found", path)
        data = read_toml(path)
        where = str(path)
        base = path.resolve().parent
        name = str(path)
    else:
        data = {"preset": ref_s}
        where = f"preset {ref_s}"
        base = Path.cwd()
        name = ref_s
    if overrides:
        data.update({k: v for k, v in overrides.items() if v is not None})
    return _from_dict(data, base, where, name)
