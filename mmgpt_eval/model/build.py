"""Build an MMFlamingo from a ModelSpec, then load the OpenFlamingo weights and any checkpoint.

:func:`load_model` loads a spec of any family (:mod:`mmgpt_eval.model.families`); the Flamingo
family's loader is :func:`load_flamingo`. The hub and device helpers here serve every family."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..compat import configure_llama_tokenizer, configure_open_clip_visual
from ..errors import UserError
from ..jsonable import jsonable
from .checkpoint import CheckpointInfo, read_checkpoint
from .flamingo.network import MMFlamingo, MMFlamingoLMMixin
from .spec import ModelSpec
from .weights import LoadReport, attach_adapter, load_openflamingo

log = logging.getLogger("mmgpt_eval")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    model: MMFlamingo
    tokenizer: Any
    image_processor: Callable
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    reports: list[LoadReport] = field(default_factory=list)
    checkpoint: CheckpointInfo | None = None
    base_checkpoint_sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    load_seconds: float = 0.0

    @property
    def eoc_token_id(self) -> int:
        return self.model.eoc_token_id

    @property
    def media_token_id(self) -> int:
        return self.model.media_token_id

    @property
    def lm_eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def provenance(self) -> dict[str, Any]:
        ck = self.checkpoint
        return {
            "model_spec": self.spec.to_dict(),
            "checkpoint": None
            if ck is None
            else {
                "path": ck.path,
                "format": ck.format,
                "layout": ck.layout,
                "sha256": ck.sha256,
                "lora": None if ck.lora is None else ck.lora.to_dict(),
                "metadata": jsonable(ck.metadata),
            },
            "openflamingo_checkpoint_sha256": self.base_checkpoint_sha256,
            "load_reports": [r.to_dict() for r in self.reports],
            "notes": self.notes,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def resolve_device(device: str) -> torch.device:
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _unavailable(spec: ModelSpec, key: str, value: str, err: Exception) -> UserError:
    short = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return UserError(
        f"{key} = {value!r} is not a local path and could not be fetched from the hub (offline, or not "
        f"cached: {short}). Download it and set {key} to the local path in a TOML model spec "
        f'(preset = "{spec.name}" plus overrides)',
        spec.source or spec.name,
    )


def _local(value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value[len("local-dir:") :] if value.startswith("local-dir:") else value)
    return p if p.exists() else None


def _fetch_hf_file(spec: ModelSpec, key: str, value: str) -> str:
    """``hf://org/repo/path/in/repo`` -> local file (cache first, then the hub unless offline)."""
    from huggingface_hub import hf_hub_download

    rest = value[len("hf://") :]
    parts = rest.split("/")
    if len(parts) < 3:
        raise UserError(f"{key} = {value!r}: expected hf://ORG/REPO/FILE", spec.source)
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        return hf_hub_download(repo, filename, local_files_only=True)
    except Exception as first:  # noqa: BLE001 - any failure means "not cached"
        if _hub_offline():
            raise _unavailable(spec, key, value, first) from None
        try:
            return hf_hub_download(repo, filename)
        except Exception as e:  # noqa: BLE001
            raise _unavailable(spec, key, value, e) from None


def load_hf_tokenizer(spec: ModelSpec):
    """The spec's Hugging Face tokenizer as it is stored (a local folder, or the hub's cache / the hub)."""
    from transformers import AutoTokenizer

    local = _local(spec.tokenizer)
    try:
        if local is not None:
            return AutoTokenizer.from_pretrained(
                str(local), local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
        return _hub_call(
            spec, "tokenizer", spec.tokenizer, AutoTokenizer.from_pretrained, trust_remote_code=spec.trust_remote_code
        )
    except UserError:
        raise
    except (OSError, ValueError) as e:
        raise UserError(f"tokenizer {spec.tokenizer!r} cannot be loaded: {e}", spec.source) from None


def load_tokenizer(spec: ModelSpec):
    tok = load_hf_tokenizer(spec)
    # OpenFlamingo / MultiModal-GPT builder: add the Flamingo special tokens, and <PAD> if needed.
    missing = [t for t in ("<|endofchunk|>", "<image>") if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    if "llama" in type(tok).__name__.lower():
        configure_llama_tokenizer(tok, add_bos=True, add_eos=False)
    tok.padding_side = "left"
    return tok


def _hub_call(spec: ModelSpec, key: str, value: str, fn: Callable, **kw):
    try:
        return fn(value, local_files_only=True, **kw)
    except Exception as first:  # noqa: BLE001
        if _hub_offline():
            raise _unavailable(spec, key, value, first) from None
        try:
            return fn(value, **kw)
        except Exception as e:  # noqa: BLE001
            raise _unavailable(spec, key, value, e) from None


def load_vision(spec: ModelSpec):
    import open_clip

    local = _local(spec.vision_encoder)
    name = spec.vision_encoder
    pretrained = spec.vision_pretrained
    extra_weights = None
    kw: dict[str, Any] = {"force_quick_gelu": bool(spec.vision_quick_gelu)}
    if local is not None:
        if not (local / "open_clip_config.json").is_file():
            raise UserError("vision_encoder folder lacks open_clip_config.json", local)
        has_weights = any((local / n).is_file() for n in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
        if pretrained:
            extra_weights = _local(pretrained) or (local / pretrained if (local / pretrained).exists() else None)
            if extra_weights is None:
                raise UserError(f"vision_pretrained file {pretrained!r} not found", spec.source)
        elif spec.init == "pretrained" and not has_weights:
            raise UserError(
                "vision_encoder folder has no weights (open_clip_model.safetensors); set "
                'vision_pretrained, or init = "random" for a randomly initialised tower',
                local,
            )
        model_name, pretrained_arg = f"local-dir:{local}", None
    else:
        model_name = name
        pretrained_arg = pretrained if spec.init == "pretrained" else None
        if pretrained_arg and _local(pretrained_arg):
            pretrained_arg = str(_local(pretrained_arg))
    try:
        with _quiet_open_clip():
            clip, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained_arg, **kw)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - open_clip raises RuntimeError/ValueError/OSError/URLError
        if local is not None:
            raise UserError(f"cannot build the vision tower from this folder: {e}", local) from None
        raise _unavailable(
            spec, "vision_encoder" if not pretrained_arg else "vision_pretrained", pretrained_arg or name, e
        ) from None
    if extra_weights is not None:
        from .safe_pickle import load_checkpoint_file

        sd = load_checkpoint_file(extra_weights)
        target = clip.visual if not any(k.startswith("visual.") for k in sd) else clip
        result = target.load_state_dict(sd, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise UserError(
                f"vision weights do not fit the tower: missing {result.missing_keys[:3]}, "
                f"unexpected {result.unexpected_keys[:3]}",
                extra_weights,
            )
    configure_open_clip_visual(clip.visual, tokens_ln_post=spec.vision_tokens_ln_post)
    return clip, preprocess


@contextlib.contextmanager
def _quiet_open_clip():
    lg = logging.getLogger()
    old = lg.level
    lg.setLevel(max(old, logging.ERROR))
    try:
        yield
    finally:
        lg.setLevel(old)


def load_lm(spec: ModelSpec):
    from transformers import AutoConfig, AutoModelForCausalLM

    local = _local(spec.lm)
    src = str(local) if local is not None else spec.lm
    trc = bool(spec.trust_remote_code)
    if spec.init == "random":
        if local is None:
            cfg = _hub_call(spec, "lm", spec.lm, AutoConfig.from_pretrained, trust_remote_code=trc)
        else:
            cfg = AutoConfig.from_pretrained(src, local_files_only=True, trust_remote_code=trc)
        return AutoModelForCausalLM.from_config(cfg, trust_remote_code=trc)
    if local is not None:
        weights = list(local.glob("*.safetensors")) + list(local.glob("*.bin"))
        if not weights:
            raise UserError(
                'lm folder has no weights (*.safetensors / *.bin); set init = "random" for a '
                "randomly initialised model",
                local,
            )
        try:
            return AutoModelForCausalLM.from_pretrained(src, local_files_only=True, trust_remote_code=trc)
        except (OSError, ValueError) as e:
            raise UserError(f"language model cannot be loaded: {e}", local) from None
    return _hub_call(spec, "lm", spec.lm, AutoModelForCausalLM.from_pretrained, trust_remote_code=trc)


def _decoder_attr(lm, spec: ModelSpec) -> str:
    if spec.decoder_layers_attr_name:
        return spec.decoder_layers_attr_name
    from open_flamingo.src.factory import _infer_decoder_layers_attr_name

    try:
        return _infer_decoder_layers_attr_name(lm)
    except ValueError:
        raise UserError(
            f"cannot infer the decoder-layers attribute of {type(lm).__name__}; set "
            f"decoder_layers_attr_name in the model spec",
            spec.source,
        ) from None


def build_base(spec: ModelSpec) -> tuple[MMFlamingo, Any, Callable, list[str]]:
    """The base OpenFlamingo (no OpenFlamingo checkpoint applied yet), deterministic for a seed."""
    from open_flamingo.src.utils import extend_instance

    notes: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        tokenizer = load_tokenizer(spec)
        clip, preprocess = load_vision(spec)
        lm = load_lm(spec)
        if spec.flamingo_version == "v1" and getattr(lm.config, "model_type", "") == "llama":
            # MultiModal-GPT's builder forces LLaMA's bos=1 / eos=2 (broken early conversions).
            for attr, want in (("bos_token_id", 1), ("eos_token_id", 2)):
                if getattr(tokenizer, attr) != want:
                    notes.append(f"tokenizer {attr} forced to {want} (MultiModal-GPT builder)")
                    setattr(tokenizer, attr, want)
        extend_instance(lm, MMFlamingoLMMixin)
        lm.set_decoder_layers_attr_name(_decoder_attr(lm, spec))
        if lm.get_input_embeddings().weight.shape[0] != len(tokenizer):
            notes.append(f"LM embeddings resized {lm.get_input_embeddings().weight.shape[0]} -> {len(tokenizer)}")
            lm.resize_token_embeddings(len(tokenizer))
        vis_dim = clip.visual.transformer.width
        model = MMFlamingo(
            clip,
            lm,
            eoc_token_id=tokenizer.convert_tokens_to_ids("<|endofchunk|>"),
            media_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            vis_dim=vis_dim,
            cross_attn_every_n_layers=spec.cross_attn_every_n_layers,
            flamingo_version=spec.flamingo_version,
            perceiver_depth=spec.perceiver_depth,
            perceiver_num_latents=spec.perceiver_num_latents,
        )
        if spec.gate_init is not None:
            with torch.no_grad():
                for block in model.lang_encoder.gated_cross_attn_layers:
                    if block is not None:
                        block.attn_gate.fill_(spec.gate_init)
                        block.ff_gate.fill_(spec.gate_init)
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer, preprocess, notes


def load_model(
    spec: ModelSpec,
    ckpt: str | os.PathLike | CheckpointInfo | None = None,
    *,
    allow_partial: bool = False,
    trust_checkpoint: bool = False,
    lora_alpha: float | None = None,
    device: str | None = None,
) -> Any:
    """Model spec (+ checkpoint) -> a ready-to-evaluate model of the spec's family (a
    :class:`LoadedModel` for Flamingo specs), with every load checked and reported."""
    from .families import get_family

    return get_family(spec.family).loader()(
        spec, ckpt, allow_partial=allow_partial, trust_checkpoint=trust_checkpoint, lora_alpha=lora_alpha, device=device
    )


def load_flamingo(
    spec: ModelSpec,
    ckpt: str | os.PathLike | CheckpointInfo | None = None,
    *,
    allow_partial: bool = False,
    trust_checkpoint: bool = False,
    lora_alpha: float | None = None,
    device: str | None = None,
) -> LoadedModel:
    """A Flamingo spec (+ checkpoint) -> a ready-to-evaluate model, with every load checked and reported."""
    t0 = time.perf_counter()
    info = None
    if ckpt is not None:
        info = ckpt if isinstance(ckpt, CheckpointInfo) else read_checkpoint(os.fspath(ckpt), trust=trust_checkpoint)
    model, tokenizer, preprocess, notes = build_base(spec)
    reports: list[LoadReport] = []
    base_sha = None
    if spec.openflamingo_checkpoint:
        path = spec.openflamingo_checkpoint
        if path.startswith("hf://"):
            path = _fetch_hf_file(spec, "openflamingo_checkpoint", path)
        elif _local(path) is None:
            raise UserError(f"openflamingo_checkpoint {path!r} not found", spec.source)
        of = read_checkpoint(path, trust=trust_checkpoint)
        if of.format != "openflamingo":
            raise UserError(f"openflamingo_checkpoint is a {of.format} checkpoint, not an OpenFlamingo one", of.path)
        reports.append(load_openflamingo(model, of, allow_partial, spec.tokenizer))
        base_sha = of.sha256
    if info is not None:
        if info.format == "openflamingo":
            reports.append(load_openflamingo(model, info, allow_partial, spec.tokenizer))
        else:
            reports.append(attach_adapter(model, info, allow_partial, spec.tokenizer, lora_alpha=lora_alpha))
    dev = resolve_device(device or spec.device)
    dtype = DTYPES[spec.precision]
    if dev.type == "cpu" and dtype == torch.float16:
        notes.append(
            "precision fp16 requested on CPU, where half-precision matmuls are slow or missing: running fp32 instead"
        )
        log.warning(notes[-1])
        dtype = torch.float32
    model.to(device=dev, dtype=dtype)
    model.requires_grad_(False)
    model.eval()
    for r in reports:
        log.info(r.summary())
        if r.partial_allowed:
            log.warning("PARTIAL LOAD ALLOWED (--allow-partial): %s", r.problems())
    return LoadedModel(
        model, tokenizer, preprocess, spec, dev, dtype, reports, info, base_sha, notes, time.perf_counter() - t0
    )
