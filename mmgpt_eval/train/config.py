"""Training recipes (TOML). Defaults are MultiModal-GPT's recipe; each default's source is noted.

model = "tiny"                 # base model spec: preset name or TOML (relative to this file)
init_checkpoint = "..."        # optional checkpoint loaded onto the base first (e.g. OpenFlamingo checkpoint.pt)
mode = "lora"                  # "lora" (MultiModal-GPT) or "pretrain" (every parameter: the tiny base)
output_dir = "runs/exp1"
[lora]   r, alpha, dropout, targets
[optim]  lr, scheduler, warmup_steps, grad_accum, clip, weight_decay, weight_decay_on, betas, eps, min_lr_ratio
[train]  steps, batch_size, per_image, max_length, precision, seed, save_every, log_every, threads, device,
         vision_weight, language_weight, loss_reduction, deterministic, resume
[[data.vision]]   type = "llava" | "llava_dial" | "cc_sbu_align" | "aokvqa" | "coco_caption" | "ocr_vqa" |
                         "easyvqa" | "easyvqa_text" | "counting", plus the adapter's options (path, images, sample...)
[[data.language]] type = "dolly" | "alpaca_gpt4" | "baize" | "language" | "plain_text", plus options
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_toml
from ..model.lora import MMGPT_TARGETS


@dataclass
class TrainConfig:
    model: str = "tiny"
    init_checkpoint: str | None = None
    mode: str = "lora"
    output_dir: str = "runs/train"
    # LoRA: configs/lora_config.py of open-mmlab/Multimodal-GPT
    lora_r: int = 16
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: list(MMGPT_TARGETS))
    # optimiser: mmgpt/train/instruction_finetune.py defaults + the README launch command
    lr: float = 1e-5
    lr_scheduler: str = "cosine"  # README passes --lr_scheduler cosine (the script's default is constant)
    warmup_steps: int = 100
    grad_accum: int = 16
    clip: float = 1.0  # MMGPT clips on every micro-step; we clip the accumulated gradient once per step
    weight_decay: float = 0.1
    weight_decay_on: str = "xattn_lora"  # MMGPT: decay only gated-xattn params that are not gate/norm/bias
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # torch AdamW defaults, as MMGPT
    eps: float = 1e-8
    min_lr_ratio: float = 0.0
    # run
    steps: int = 1297  # ~166k vision samples / (8 GPUs x batch 1 x accumulation 16): one MMGPT epoch
    batch_size: int = 1  # per process, per micro-step, for each of the vision and language batches
    language_batch_size: int = 0  # 0: same as batch_size
    per_image: int = 1  # examples sharing an image kept together (1 = plain shuffling)
    length_buckets: int = 8  # batches drawn together and sorted by length (less padding); 1 = off
    max_length: int = 512  # MMGPT truncates each sample (each dialogue turn) to 512 tokens
    precision: str = "auto"  # bf16 autocast on GPU (MMGPT used fp16 amp), fp32 on CPU
    seed: int = 42
    save_every: int = 0
    log_every: int = 10
    threads: int = 0
    device: str = ""  # "", "cpu", "cuda"
    vision_weight: float = 1.0  # one vision batch and one language batch per step, equal weight
    language_weight: float = 1.0
    # "token": mean over every response token of the (global) micro-batch, as the HF loss MultiModal-GPT
    # used; "sequence": each sequence's mean token loss, averaged over sequences (short answers weigh
    # as much as long ones)
    loss_reduction: str = "token"
    # "cpu": torch.use_deterministic_algorithms on CPU (bitwise-repeatable training; without it some CPU
    # kernels change the weights from run to run, measured: make reproduce twice differed by 6 points);
    # "always": also on GPU (slower kernels; sets CUBLAS_WORKSPACE_CONFIG); "never"
    deterministic: str = "cpu"
    resume: bool = True
    vision_data: list[dict[str, Any]] = field(default_factory=list)
    language_data: list[dict[str, Any]] = field(default_factory=list)
    eval_tasks: list[str] = field(default_factory=list)
    eval_limit: int | None = None
    base_dir: Path | None = None
    source: str | None = None


_SECTIONS = {
    "lora": {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "lora_targets"},
    "optim": {
        k: k
        for k in (
            "lr",
            "warmup_steps",
            "grad_accum",
            "clip",
            "weight_decay",
            "weight_decay_on",
            "betas",
            "eps",
            "min_lr_ratio",
        )
    }
    | {"scheduler": "lr_scheduler"},
    "train": {
        k: k
        for k in (
            "steps",
            "batch_size",
            "language_batch_size",
            "per_image",
            "length_buckets",
            "max_length",
            "precision",
            "seed",
            "save_every",
            "log_every",
            "threads",
            "device",
            "vision_weight",
            "language_weight",
            "loss_reduction",
            "deterministic",
            "resume",
        )
    },
    "eval": {"tasks": "eval_tasks", "limit": "eval_limit"},
}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    path = Path(path)
    raw = read_toml(path)
    base = path.resolve().parent
    kw: dict[str, Any] = {}
    for key in ("model", "init_checkpoint", "mode", "output_dir"):
        if key in raw:
            kw[key] = raw.pop(key)
    for section, mapping in _SECTIONS.items():
        sec = raw.pop(section, {})
        if not isinstance(sec, dict):
            raise UserError(f"[{section}] must be a table", path)
        for k, v in sec.items():
            if k not in mapping:
                raise UserError(f"unknown key {k!r} in [{section}]; known: {', '.join(mapping)}", path)
            kw[mapping[k]] = v
    data = raw.pop("data", {})
    kw["vision_data"] = list(data.pop("vision", []))
    kw["language_data"] = list(data.pop("language", []))
    if data:
        raise UserError(f"unknown [data] entries {', '.join(data)} (use [[data.vision]] / [[data.language]])", path)
    if raw:
        raise UserError(f"unknown top-level key(s) {', '.join(raw)}", path)
    for key in ("model", "init_checkpoint"):
        v = kw.get(key)
        if isinstance(v, str) and v and (base / v).exists():
            kw[key] = str((base / v).resolve())
    if "output_dir" in kw and not Path(kw["output_dir"]).is_absolute():
        kw["output_dir"] = str(Path.cwd() / kw["output_dir"])
    kw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        cfg = TrainConfig(**kw, base_dir=base, source=str(path))
    except TypeError as e:
        raise UserError(f"bad recipe: {e}", path) from None
    _check_types(cfg, path)
    if cfg.mode not in ("lora", "pretrain"):
        raise UserError(f"mode must be lora or pretrain, got {cfg.mode!r}", path)
    if cfg.steps < 1 or cfg.grad_accum < 1 or cfg.batch_size < 1:
        raise UserError("steps, grad_accum and batch_size must be at least 1", path)
    if cfg.loss_reduction not in ("token", "sequence"):
        raise UserError(f"loss_reduction must be token or sequence, got {cfg.loss_reduction!r}", path)
    if cfg.deterministic not in ("cpu", "always", "never"):
        raise UserError(f"deterministic must be cpu, always or never, got {cfg.deterministic!r}", path)
    return cfg


def _check_types(cfg: TrainConfig, path: Path) -> None:
    """Every scalar key has its default's type (an integer is a fine float), so a value such as
    ``steps = "many"`` is one line naming the key instead of a failure deep inside training."""
    for f in fields(cfg):
        default = f.default
        if default is MISSING or default is None or not isinstance(default, (bool, int, float, str)):
            continue
        v = getattr(cfg, f.name)
        want = type(default)
        ok = (
            isinstance(v, bool)
            if want is bool
            else isinstance(v, (int, float)) and not isinstance(v, bool)
            if want is float
            else isinstance(v, int) and not isinstance(v, bool)
            if want is int
            else isinstance(v, str)
        )
        if not ok:
            raise UserError(f"{f.name} = {v!r}: expected {want.__name__}", path)
