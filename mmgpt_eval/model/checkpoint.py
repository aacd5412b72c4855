"""Checkpoint formats: detection, LoRA settings, and mapping of keys onto our Flamingo.

Formats (``CheckpointInfo.format``):

* ``mmgpt-trainer``: MultiModal-GPT ``checkpoint_N.pt`` -- ``{epoch, model_state_dict (DDP "module."
  keys), optimizer_state_dict, lr_scheduler_state_dict, tuning_config}``.
* ``mmgpt-weights``: MultiModal-GPT ``final_weights.pt`` (no ``module.`` prefix; the original demo
  silently loads nothing from it) and the released ``mmgpt-lora-v0-release.pt`` layout
  (``{model_state_dict, tuning_config}``).
* ``mmgpt-raw``: a bare state dict of LoRA (and possibly other trained) tensors.
* ``peft``: a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors|bin``).
* ``openflamingo``: an OpenFlamingo ``checkpoint.pt`` (perceiver, gated cross-attention, maybe
  embeddings); ``layout`` is ``v1`` (0.0.2: alias keys kept, full CLIP under
  ``vision_encoder.visual``) or ``v2`` (2.x: aliases dropped).

Every key is mapped to a *canonical* name: the path of the parameter in :class:`MMFlamingo` as
``named_parameters()`` reports it, with LoRA adapter names removed (``...q_proj.lora_A.weight``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..io import sha256_file
from .safe_pickle import load_checkpoint_file, to_plain
from .validate import LORA_RE, PEFT_WEIGHT_FILES, is_lora_key, short, validate_checkpoint

# the value checks live in validate.py; read_checkpoint's callers import them from here too
from .validate import allow_nonfinite_tensors as allow_nonfinite_tensors
from .validate import check_finite as check_finite
from .validate import check_lora_rank as check_lora_rank
from .validate import nonfinite_tensors as nonfinite_tensors

# MultiModal-GPT configs/lora_config.py (the released v0 adapter's settings)
MMGPT_DEFAULT_LORA: dict[str, Any] = {
    "lora_r": 16,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "to_q", "to_kv", "to_out", "ff.1", "ff.3"],
}

_WRAPPER_SEGMENTS = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
_LORA_RE = LORA_RE  # LoRA tensor names (validate.py's, one definition)
_LORA_RE_NONAME = re.compile(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)\.(weight)$")
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_LM_ROOTS = ("model.", "transformer.", "gpt_neox.", "lm_head.", "embed_out.")


@dataclass
class LoraSettings:
    r: int
    alpha: float
    dropout: float = 0.0
    target_modules: list[str] | str | None = None
    use_rslora: bool = False
    use_dora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    source: str = ""  # where the settings came from

    @property
    def scaling(self) -> float:
        if self.r < 1:  # inferred from tensors without a 2-D lora_A: no rank to divide by
            return float("nan")
        return self.alpha / (self.r**0.5 if self.use_rslora else self.r)

    def to_dict(self) -> dict[str, Any]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "scaling": self.scaling,
            "dropout": self.dropout,
            "target_modules": self.target_modules,
            "use_rslora": self.use_rslora,
            "use_dora": self.use_dora,
            "rank_pattern": self.rank_pattern,
            "alpha_pattern": self.alpha_pattern,
            "source": self.source,
        }


@dataclass
class CheckpointInfo:
    path: str
    format: str
    layout: str
    tensors: dict[str, torch.Tensor]
    lora: LoraSettings | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    @property
    def lora_keys(self) -> list[str]:
        return [k for k in self.tensors if _LORA_RE.search(k)]

    @property
    def is_adapter(self) -> bool:
        return self.format in ("mmgpt-trainer", "mmgpt-weights", "mmgpt-raw", "peft")


# --------------------------------------------------------------------------- key mapping
def infer_decoder_attr(keys: list[str]) -> str | None:
    pat = re.compile(r"lang_encoder\.(?:base_model\.model\.)?(.+?)\.(\d+)\.(gated_cross_attn_layer|decoder_layer)\.")
    for k in keys:
        m = pat.search(_strip_wrappers(k))
        if m:
            return m.group(1)
    return None


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for seg in _WRAPPER_SEGMENTS:
            if key.startswith(seg):
                key = key[len(seg) :]
                changed = True
        for seg in _WRAPPER_SEGMENTS[1:]:
            if "." + seg in key:
                key = key.replace("." + seg, ".")
                changed = True
    return key


def canonical_key(key: str, decoder_attr: str = "model.layers") -> str | None:
    """Map a checkpoint key onto MMFlamingo's parameter naming; ``None`` for keys to ignore."""
    k = _strip_wrappers(key)
    # PEFT wrappers: base_model.model.<inner>
    k = re.sub(r"(^|\.)base_model\.model\.", r"\1", k)
    # LoRA adapter name (".default") dropped
    k = _LORA_RE.sub(lambda m: f".{m.group(1)}.{m.group(2)}", k)
    if k.endswith(_IGNORED_SUFFIXES):
        return None
    if not k.startswith(("lang_encoder.", "perceiver.", "vision_encoder.")):
        if k.startswith(_LM_ROOTS) or k.startswith(decoder_attr + "."):
            k = "lang_encoder." + k
        elif k.startswith(("gated_cross_attn_layers.", "old_decoder_blocks.")):
            k = "lang_encoder." + k
    if k.startswith("vision_encoder.visual."):
        k = "vision_encoder." + k[len("vision_encoder.visual.") :]
    da = re.escape(decoder_attr)
    k = re.sub(
        r"^lang_encoder\.gated_cross_attn_layers\.(\d+)\.",
        rf"lang_encoder.{decoder_attr}.\1.gated_cross_attn_layer.",
        k,
    )
    k = re.sub(r"^lang_encoder\.old_decoder_blocks\.(\d+)\.", rf"lang_encoder.{decoder_attr}.\1.decoder_layer.", k)
    # a decoder layer key without the FlamingoLayer wrapper (plain LM / text-only adapter)
    m = re.match(rf"^lang_encoder\.{da}\.(\d+)\.(?!gated_cross_attn_layer\.|decoder_layer\.)", k)
    if m:
        k = k[: m.end()] + "decoder_layer." + k[m.end() :]
    return k


def module_of(canonical_lora_key: str) -> str:
    """``...q_proj.lora_A.weight`` -> ``...q_proj``."""
    return _LORA_RE_NONAME.sub("", canonical_lora_key)


# --------------------------------------------------------------------------- LoRA settings
def _settings_from_tuning_config(tc: Any, source: str, where: Path) -> tuple[LoraSettings | None, dict[str, Any]]:
    plain = to_plain(tc)
    if isinstance(plain, dict) and "tuning_config" in plain and isinstance(plain["tuning_config"], dict):
        plain = plain["tuning_config"]  # mmengine Config of configs/lora_config.py
    if not isinstance(plain, dict):
        return None, {"tuning_config": repr(type(tc))}
    summary = {k: v for k, v in plain.items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    if not plain.get("lora", True):
        return None, summary
    if "lora_r" not in plain or "lora_alpha" not in plain:
        return None, summary  # the rank and alpha are inferred from the tensors
    r = _number(plain["lora_r"], "tuning_config 'lora_r'", int, where)
    alpha = _number(plain["lora_alpha"], "tuning_config 'lora_alpha'", float, where)
    dropout = plain.get("lora_dropout")
    try:
        dropout = float(dropout or 0.0)
    except (TypeError, ValueError, OverflowError):
        dropout = 0.0  # not used for evaluation
    targets = plain.get("lora_target_modules")
    return LoraSettings(
        r=r,
        alpha=alpha,
        dropout=dropout,
        target_modules=[str(t) for t in targets] if isinstance(targets, (list, tuple)) and targets else None,
        source=source,
    ), summary


def _number(v: Any, name: str, kind: type, where: str | Path) -> Any:
    """A number of a config (int or float; a numeric string is accepted as before), refused with the
    key's name when it is not one, when an integer is not whole, or when it overflows a float."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise UserError(f"{name} must be a number, got {short(v)}", where)
    if kind is int and isinstance(v, float) and not v.is_integer():  # 16.5, nan, inf
        raise UserError(f"{name} must be an integer, got {short(v)}", where)
    try:
        out = kind(v)
        if kind is int and isinstance(v, (float, str)) and float(v) != out:
            raise UserError(f"{name} must be an integer, got {short(v)}", where)
        if kind is float and isinstance(v, int):
            float(v)  # an integer too large for a float overflows here
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {short(v)}", where) from None
    except OverflowError:
        raise UserError(f"{name} = {short(v)} overflows a floating-point number", where) from None
    return out


def _settings_from_peft_config(cfg: dict[str, Any], source: str) -> LoraSettings:
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise UserError(f"adapter type {peft_type} is not supported (only LoRA)", source)
    for key in ("r", "lora_alpha"):  # PEFT's own defaults (r=8, alpha=8) need not be this adapter's
        if key not in cfg:
            what = "the LoRA rank" if key == "r" else "the LoRA scaling is lora_alpha / r"
            raise UserError(f"adapter_config.json has no {key!r} ({what})", source)

    def number(key: str, kind: type) -> Any:
        return _number(cfg.get(key), f"adapter_config.json: {key!r}", kind, source)

    r = number("r", int)
    alpha = number("lora_alpha", float)
    dropout = 0.0 if cfg.get("lora_dropout") is None else number("lora_dropout", float)
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"adapter_config.json: 'lora_dropout' must be in [0, 1), got {dropout!r}", source)
    patterns: dict[str, dict[str, Any]] = {}
    for key, kind in (("rank_pattern", int), ("alpha_pattern", float)):
        table = cfg.get(key) or {}
        if not isinstance(table, dict):
            raise UserError(f"adapter_config.json: {key!r} must be an object", source)
        patterns[key] = {
            str(k): _number(v, f"adapter_config.json: {key!r} entry {k!r}", kind, source) for k, v in table.items()
        }
    for key in ("use_rslora", "use_dora"):  # bool("false") would be True
        if not isinstance(cfg.get(key, False), bool):
            raise UserError(f"adapter_config.json: {key!r} must be true or false, got {short(cfg[key])}", source)
    targets = cfg.get("target_modules")
    if not (
        targets is None
        or isinstance(targets, str)
        or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
    ):
        raise UserError(
            f"adapter_config.json: 'target_modules' must be a list of names or a regex, got {short(targets)}", source
        )
    base = cfg.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise UserError(f"adapter_config.json: 'base_model_name_or_path' must be a string, got {short(base)}", source)
    rank_pattern, alpha_pattern = patterns["rank_pattern"], patterns["alpha_pattern"]
    return LoraSettings(
        r=r,
        alpha=alpha,
        dropout=dropout,
        target_modules=targets,
        use_rslora=bool(cfg.get("use_rslora", False)),
        use_dora=bool(cfg.get("use_dora", False)),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        source=source,
    )


# --------------------------------------------------------------------------- detection
def _only_tensors(d: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise UserError(f"state dict has a non-string key {k!r}", where)
        if isinstance(v, torch.Tensor):
            out[k] = v
    return out


SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def shipped_checkpoints() -> list[str]:
    """Names of the adapters that ship with mmgpt-eval (``--ckpt tiny-mmgpt``)."""
    return sorted(p.name for p in SHIPPED_WEIGHTS.iterdir() if p.is_dir()) if SHIPPED_WEIGHTS.is_dir() else []


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A path as given, or the name of a shipped adapter when no such path exists."""
    p = Path(path)
    if not p.exists() and str(path) in shipped_checkpoints():
        return SHIPPED_WEIGHTS / str(path)
    return p


def read_checkpoint(
    path: str | Path, trust: bool = False, hash_file: bool = True, check_values: bool = True
) -> CheckpointInfo:
    """Read and classify a checkpoint (file or PEFT folder). Never needs a base model.

    Every checkpoint read passes :func:`mmgpt_eval.model.validate.validate_checkpoint` (LoRA settings,
    adapters without LoRA tensors or with non-floating ones, NaN/inf values unless --allow-nonfinite,
    stored vs actual rank). ``inspect`` passes ``check_values=False`` to describe NaN/inf values and rank
    mismatches instead of refusing them."""
    info = _read_checkpoint(path, trust, hash_file)
    validate_checkpoint(info, values=check_values)
    return info


def _read_checkpoint(path: str | Path, trust: bool = False, hash_file: bool = True) -> CheckpointInfo:
    path = resolve_checkpoint_path(path)
    if path.name in PEFT_WEIGHT_FILES and path.is_file():
        # the weights file of a PEFT adapter: its settings are in the folder's adapter_config.json
        if not (path.parent / "adapter_config.json").exists():
            raise _no_adapter_config(path)
        path = path.parent
    if path.is_dir():
        return _read_peft_folder(path, trust, hash_file)
    obj = load_checkpoint_file(path, trust=trust)
    where = str(path)
    digest = sha256_file(path) if hash_file else ""
    if not isinstance(obj, dict):
        raise UserError(f"unrecognised checkpoint: top-level object is a {type(obj).__name__}, expected a dict", path)
    meta: dict[str, Any] = {}
    if "model_state_dict" in obj:
        sd = obj["model_state_dict"]
        if not isinstance(sd, dict):
            raise UserError("model_state_dict is not a dict", path)
        tensors = _only_tensors(sd, where)
        prefixed = bool(tensors) and all(k.startswith("module.") for k in tensors)
        trainer = any(k in obj for k in ("optimizer_state_dict", "epoch", "lr_scheduler_state_dict"))
        fmt = "mmgpt-trainer" if trainer else "mmgpt-weights"
        layout = "ddp-prefixed" if prefixed else "unprefixed"
        if "epoch" in obj:
            meta["epoch"] = obj["epoch"]
        tc_summary: dict[str, Any]
        lora, tc_summary = (None, {})
        if "tuning_config" in obj and obj["tuning_config"] is not None:
            lora, tc_summary = _settings_from_tuning_config(obj["tuning_config"], f"{path.name}: tuning_config", path)
            meta["tuning_config"] = tc_summary
        for extra in ("model_spec", "mmgpt_eval", "step", "global_step"):
            if extra in obj:
                meta[extra] = to_plain(obj[extra])
        info = CheckpointInfo(str(path), fmt, layout, tensors, lora, meta, digest)
    else:
        tensors = _only_tensors(obj, where)
        if not tensors:
            raise UserError("unrecognised checkpoint: no tensors found", path)
        non_tensor = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if non_tensor:
            meta["non_tensor_keys"] = non_tensor[:20]
        if any(is_lora_key(k) for k in tensors):
            info = CheckpointInfo(str(path), "mmgpt-raw", "raw-state-dict", tensors, None, meta, digest)
        elif any(k.startswith(("perceiver.", "module.perceiver.")) or "gated_cross_attn" in k for k in tensors):
            v1 = any(".gated_cross_attn_layers." in k for k in tensors) or any(
                k.startswith("vision_encoder.visual.") for k in tensors
            )
            info = CheckpointInfo(str(path), "openflamingo", "v1" if v1 else "v2", tensors, None, meta, digest)
        else:
            raise UserError(
                "unrecognised checkpoint: neither LoRA tensors nor OpenFlamingo "
                "(perceiver / gated cross-attention) tensors found",
                path,
            )
    if info.is_adapter and info.lora_keys and info.lora is None:
        info.lora = _infer_lora_settings(info)
    return info


def _infer_lora_settings(info: CheckpointInfo) -> LoraSettings:
    ranks = sorted({int(v.shape[0]) for k, v in info.tensors.items() if ".lora_A" in k and v.ndim == 2})
    r = ranks[0] if ranks else 0
    if r == MMGPT_DEFAULT_LORA["lora_r"] and len(ranks) == 1:
        return LoraSettings(
            r=r,
            alpha=float(MMGPT_DEFAULT_LORA["lora_alpha"]),
            dropout=0.0,
            target_modules=list(MMGPT_DEFAULT_LORA["lora_target_modules"]),
            source="assumed: MultiModal-GPT configs/lora_config.py (r=16, alpha=16); the file stores no tuning_config",
        )
    return LoraSettings(r=r, alpha=float("nan"), source="unknown: the file stores no LoRA alpha")


def _no_adapter_config(weights: Path) -> UserError:
    return UserError(
        "PEFT adapter weights without adapter_config.json next to them (the LoRA rank and alpha are stored "
        "there); add the adapter's adapter_config.json",
        weights,
    )


def _read_peft_folder(path: Path, trust: bool, hash_file: bool) -> CheckpointInfo:
    cfg_path = path / "adapter_config.json"
    for name in PEFT_WEIGHT_FILES:
        if (path / name).is_file() and not cfg_path.exists():
            raise _no_adapter_config(path / name)
    if not cfg_path.exists():
        ckpts = sorted(path.glob("*.pt"))
        hint = f" (it holds {len(ckpts)} .pt files: pass one of them)" if ckpts else ""
        raise UserError(f"not a PEFT adapter folder: adapter_config.json missing{hint}", path)
    if not cfg_path.is_file():
        raise UserError("adapter_config.json is not a file", cfg_path)
    from ..io import read_json

    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise UserError("adapter_config.json must hold a JSON object", cfg_path)
    weights = None
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (path / name).is_file():
            weights = path / name
            break
    if weights is None:
        raise UserError("PEFT adapter folder has no adapter_model.safetensors or adapter_model.bin", path)
    obj = load_checkpoint_file(weights, trust=trust)
    if not isinstance(obj, dict):
        raise UserError("adapter weights are not a state dict", weights)
    tensors = _only_tensors(obj, str(weights))
    lora = _settings_from_peft_config(cfg, str(cfg_path))
    meta: dict[str, Any] = {"base_model_name_or_path": cfg.get("base_model_name_or_path"), "weights_file": weights.name}
    extra = path / "mmgpt_eval.json"
    if extra.is_file():
        meta["mmgpt_eval"] = read_json(extra)
        if isinstance(meta["mmgpt_eval"], dict) and "model_spec" in meta["mmgpt_eval"]:
            meta["model_spec"] = meta["mmgpt_eval"]["model_spec"]
    digest = sha256_file(weights) if hash_file else ""
    return CheckpointInfo(str(path), "peft", "adapter-folder", tensors, lora, meta, digest)


# --------------------------------------------------------------------------- summaries
def lora_module_kinds(module_names: list[str]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for m in module_names:
        leaf = m.rsplit(".", 2)
        name = ".".join(leaf[-2:]) if leaf[-1].isdigit() else leaf[-1]
        where = (
            "gated_xattn" if "gated_cross_attn_layer" in m else ("perceiver" if m.startswith("perceiver.") else "lm")
        )
        kinds[f"{where}:{name}"] = kinds.get(f"{where}:{name}", 0) + 1
    return dict(sorted(kinds.items()))


def describe(info: CheckpointInfo) -> dict[str, Any]:
    """Everything ``mmgpt-eval inspect`` prints, as a dict."""
    decoder_attr = infer_decoder_attr(list(info.tensors)) or "model.layers"
    mapping: dict[str, str | None] = {}
    for k in info.tensors:
        mapping[k] = canonical_key(k, decoder_attr)
    canon = [c for c in mapping.values() if c is not None]
    alias_dupes = len(canon) - len(set(canon))
    lora_keys = [k for k in info.tensors if is_lora_key(k)]
    lora_modules = sorted({module_of(c) for k in lora_keys if (c := mapping[k])})
    n_lora = sum(info.tensors[k].numel() for k in lora_keys)
    distinct = {c: info.tensors[k] for k, c in mapping.items() if c is not None}
    n_all = sum(t.numel() for t in distinct.values())
    groups: dict[str, int] = {}
    for c in set(canon):
        if is_lora_key(c):
            g = "lora"
        elif c.startswith("perceiver."):
            g = "perceiver"
        elif "gated_cross_attn_layer" in c:
            g = "gated_cross_attn"
        elif "embed_tokens" in c or ".wte." in c or "embed_in" in c:
            g = "embeddings"
        elif c.startswith("vision_encoder."):
            g = "vision_encoder"
        else:
            g = "other"
        groups[g] = groups.get(g, 0) + 1
    examples = []
    for k in list(info.tensors)[:3] + list(info.tensors)[-3:]:
        if (k, mapping[k]) not in examples:
            examples.append((k, mapping[k]))
    emb = [info.tensors[k] for k, c in mapping.items() if c and c.endswith(("embed_tokens.weight", "wte.weight"))]
    return {
        "path": info.path,
        "format": info.format,
        "layout": info.layout,
        "sha256": info.sha256,
        "tensors": len(info.tensors),
        "distinct_after_mapping": len(set(canon)),
        "alias_duplicates": alias_dupes,
        "ignored_keys": [k for k, c in mapping.items() if c is None],
        "groups": dict(sorted(groups.items())),
        "parameters_total": int(n_all),
        "lora": None if info.lora is None else info.lora.to_dict(),
        "lora_parameters": int(n_lora),
        "lora_modules": len(lora_modules),
        "lora_module_kinds": lora_module_kinds(lora_modules),
        "vocab_size": int(emb[0].shape[0]) if emb else None,
        "decoder_layers_attr": decoder_attr,
        "metadata": info.metadata,
        "key_mapping_examples": examples,
    }


def adapter_config_json(settings: LoraSettings, module_names: list[str], base: str | None) -> dict[str, Any]:
    """adapter_config.json content for adapters we save (PEFT format)."""
    return {
        "peft_type": "LORA",
        "task_type": None,
        "r": settings.r,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.dropout,
        "target_modules": sorted(module_names),
        "bias": "none",
        "use_rslora": settings.use_rslora,
        "use_dora": settings.use_dora,
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "rank_pattern": settings.rank_pattern,
        "alpha_pattern": settings.alpha_pattern,
        "base_model_name_or_path": base,
        "inference_mode": True,
    }
