"""The training loop: one process or torchrun data parallelism (DDP; gloo on CPU, nccl on GPU).

Every optimizer step accumulates ``grad_accum`` micro-steps; each micro-step runs one
vision-language batch and one language-only batch (equal loss weights by default) -- MultiModal-GPT's
joint recipe. The loss of a batch is the mean over its sequences of each sequence's mean token loss,
normalised by the *global* micro-batch, so N processes with the same global batch compute the same
gradient as one process (up to float summation order).

Modes: ``lora`` (MultiModal-GPT: LoRA adapters only are trained) and ``pretrain`` (the tiny base
OpenFlamingo from scratch: every parameter, the vision tower included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..distributed import env_world
from ..distributed import init as init_process_group
from ..errors import UserError
from ..io import atomic_write_json, atomic_writer
from ..model.build import LoadedModel, load_model
from ..model.checkpoint import LoraSettings
from ..model.export import save_mmgpt_checkpoint, save_peft_adapter
from ..model.lora import inject_lora, target_module_names
from ..model.spec import load_spec
from ..progress import ProgressLog
from .config import TrainConfig
from .data import IGNORE, Example, Tokenized, build_dataset, collate, tokenize_example

log = logging.getLogger("mmgpt_eval")


# ----------------------------------------------------------------------------- sampling
class GroupedSampler:
    """Endless, seeded stream of example indices. Examples that share an image are kept together in
    runs of up to ``per_image`` (so a batch encodes each image once); the order depends only on the
    seed and the epoch, never on the number of processes."""

    def __init__(self, examples: list[Example], per_image: int, seed: int):
        self.groups: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            self.groups.setdefault(e.image.key if e.image else f"__text{i}", []).append(i)
        self.per_image = max(1, per_image)
        self.seed = seed
        self.epoch = 0
        self.pos = 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        chunks: list[list[int]] = []
        for key in sorted(self.groups):
            members = list(self.groups[key])
            rng.shuffle(members)
            chunks.extend(members[i : i + self.per_image] for i in range(0, len(members), self.per_image))
        rng.shuffle(chunks)
        return [i for c in chunks for i in c]

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self.pos >= len(self._order):
                self.epoch += 1
                self.pos = 0
                self._order = self._epoch_order()
            out.append(self._order[self.pos])
            self.pos += 1
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load(self, st: dict[str, int]) -> None:
        self.epoch, self.pos = st["epoch"], st["pos"]
        self._order = self._epoch_order()


# ----------------------------------------------------------------------------- model step
class TrainStep(nn.Module):
    """What DDP wraps: unique images -> features -> Flamingo -> logits (features inside forward so
    DDP sees every parameter that was used)."""

    def __init__(self, flamingo):
        super().__init__()
        self.flamingo = flamingo

    def forward(self, ids, mask, pixels=None, index=None, features=None):
        if pixels is not None:
            feats = self.flamingo.encode_vision(pixels[:, None, None])[:, 0]
            features = feats[index][:, None]
        elif features is not None:
            features = features[index][:, None]
        return self.flamingo(vision_x=None, lang_x=ids, attention_mask=mask, vision_features=features).logits


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "sequence") -> torch.Tensor:
    """``sequence``: sum over sequences of each sequence's mean next-token loss (sequences without
    targets add 0). ``token``: sum of the next-token losses of every target token."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    tok = nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(shift_labels.shape)
    valid = (shift_labels != IGNORE).float()
    if reduction == "token":
        return (tok * valid).sum()
    per_seq = (tok * valid).sum(1) / valid.sum(1).clamp(min=1)
    return per_seq.sum()


def n_targets(t: Tokenized) -> int:
    """Target tokens of one tokenized example (the first position is never a target)."""
    return sum(1 for lab in t.labels[1:] if lab != IGNORE)


# ----------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.rank, self.world, self.local_rank = env_world()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        spec = load_spec(cfg.model, {"device": self._device_str()} if cfg.device else None)
        self.loaded: LoadedModel = load_model(spec, cfg.init_checkpoint)
        self.device = self.loaded.device
        init_process_group(self.device.type == "cuda")
        self.model = self.loaded.model
        self.tok = self.loaded.tokenizer
        self.lora: LoraSettings | None = None
        self._setup_trainable()
        self.vision = build_dataset(cfg.vision_data, cfg.base_dir)
        self.language = build_dataset(cfg.language_data, cfg.base_dir)
        if not self.vision and not self.language:
            raise UserError("the recipe has no training data ([[data.vision]] / [[data.language]])")
        self._tok_cache: dict[int, Tokenized] = {}
        self._tok_cache_lang: dict[int, Tokenized] = {}
        self._px: dict[str, torch.Tensor] = {}
        self._feats: dict[str, torch.Tensor] = {}
        self.vs = GroupedSampler(self.vision, cfg.per_image, cfg.seed) if self.vision else None
        self.ls = GroupedSampler(self.language, 1, cfg.seed + 1) if self.language else None
        self._queues: dict[int, list[list[int]]] = {}  # pending batches of each sampler (length buckets)
        self.step_module = TrainStep(self.model)
        self.ddp = self.step_module
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.step_module,
                find_unused_parameters=True,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.step = 0
        self.out = Path(cfg.output_dir)

    def _device_str(self) -> str:
        if self.cfg.device == "cuda":
            return f"cuda:{env_world()[2]}"
        return self.cfg.device

    # ---------------------------------------------------------------- params
    def _setup_trainable(self) -> None:
        cfg = self.cfg
        m = self.model
        m.requires_grad_(False)
        if cfg.mode == "lora":
            self.lora = LoraSettings(
                r=cfg.lora_r,
                alpha=float(cfg.lora_alpha),
                dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_targets),
            )
            assert self.lora.target_modules is not None  # set just above
            names = target_module_names(m, self.lora.target_modules)
            if not names:
                raise UserError("no LoRA target modules matched in the language model")
            inject_lora(m, self.lora, names)
            for n, p in m.named_parameters():
                if ".lora_" in n:
                    p.requires_grad_(True)
        elif cfg.mode == "pretrain":
            m.requires_grad_(True)
            m.train_vision_encoder = True
        else:
            raise UserError(f"mode must be lora or pretrain, got {cfg.mode!r}")
        m.train()

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for n, p in self.trainable():
            if cfg.weight_decay_on == "xattn_lora":
                # MultiModal-GPT: weight decay only on gated cross-attention parameters that are not
                # gates, norms or biases -- with LoRA that is the cross-attention LoRA.
                wd = "gated_cross_attn_layer" in n and not any(x in n for x in ("gate", "norm", "bias"))
            else:  # "matrices": every >= 2-D tensor
                wd = p.ndim >= 2
            (decay if wd else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)

    def _scheduler(self):
        cfg = self.cfg
        total = max(1, cfg.steps)

        def factor(step: int) -> float:
            if step < cfg.warmup_steps:
                return (step + 1) / max(1, cfg.warmup_steps)
            if cfg.lr_scheduler == "constant":
                return 1.0
            progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
            if cfg.lr_scheduler == "linear":
                return max(cfg.min_lr_ratio, 1.0 - progress)
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    # ---------------------------------------------------------------- batches
    def _tokenized(self, data: list[Example], cache: dict[int, Tokenized], i: int) -> Tokenized:
        t = cache.get(i)
        if t is None:
            t = cache[i] = tokenize_example(data[i], self.tok, self.cfg.max_length)
        return t

    def _pixels(self, ex: Example) -> torch.Tensor:
        assert ex.image is not None  # called for image examples only
        key = ex.image.key
        px = self._px.get(key)
        if px is None:
            px = self._px[key] = self.loaded.image_processor(ex.image.open())
        return px

    def _batch_inputs(self, data: list[Example], idx: list[int], cache) -> dict[str, Any]:
        toks = [self._tokenized(data, cache, i) for i in idx]
        ids, mask, labels = collate(toks, self.tok.pad_token_id)
        inputs: dict[str, Any] = {"ids": ids.to(self.device), "mask": mask.to(self.device)}
        exs = [data[i] for i in idx]
        if exs[0].image is not None:
            # a batch holds image examples only (examples are grouped by image)
            order: dict[str, int] = {}
            for e in exs:
                order.setdefault(e.image.key, len(order))  # type: ignore[union-attr]
            index = torch.tensor([order[e.image.key] for e in exs], device=self.device)  # type: ignore[union-attr]
            keys = list(order)
            first = {e.image.key: e for e in exs}  # type: ignore[union-attr]
            if self.cfg.mode == "lora":
                # frozen vision path: features computed once per image and reused
                missing = [k for k in keys if k not in self._feats]
                if missing:
                    px = torch.stack([self._pixels(first[k]) for k in missing]).to(self.device, self.loaded.dtype)
                    with torch.no_grad():
                        f = self.model.encode_vision(px[:, None, None])[:, 0]
                    for k, v in zip(missing, f):
                        self._feats[k] = v.detach()
                inputs["features"] = torch.stack([self._feats[k] for k in keys])
            else:
                inputs["pixels"] = torch.stack([self._pixels(first[k]) for k in keys]).to(
                    self.device, self.loaded.dtype
                )
            inputs["index"] = index
        return {"inputs": inputs, "labels": labels.to(self.device), "n_tokens": int((labels != IGNORE).sum())}

    def _batch_size(self, sampler: GroupedSampler) -> int:
        if sampler is self.ls and self.cfg.language_batch_size:
            return self.cfg.language_batch_size
        return self.cfg.batch_size

    def _global_slice(self, sampler: GroupedSampler, data: list[Example], cache) -> tuple[list[int], list[int]]:
        """This rank's part of the next global batch. Batches come from "mega-batches" of
        ``length_buckets`` batches sorted by token length (little padding), served in a seeded
        random order; the same for any number of processes."""
        queue = self._queues.setdefault(id(sampler), [])
        gb = self._batch_size(sampler) * self.world
        if not queue:
            k = max(1, self.cfg.length_buckets)
            idx = sampler.take(gb * k)
            if k > 1:
                idx.sort(key=lambda i: len(self._tokenized(data, cache, i).input_ids))
            batches = [idx[j : j + gb] for j in range(0, len(idx), gb)]
            random.Random(f"{self.cfg.seed}:{sampler.epoch}:{sampler.pos}").shuffle(batches)
            queue.extend(batches)
        batch = queue.pop(0)
        return batch[self.rank :: self.world], batch

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.precision in ("bf16", "fp16", "auto"):
            dtype = torch.float16 if self.cfg.precision == "fp16" else torch.bfloat16
            return torch.autocast("cuda", dtype=dtype)
        import contextlib

        return contextlib.nullcontext()

    def _micro(self, data, cache, sampler, weight: float, sync: bool) -> tuple[float, int]:
        mine, global_idx = self._global_slice(sampler, data, cache)
        b = self._batch_inputs(data, mine, cache)
        token_mean = self.cfg.loss_reduction == "token"
        import contextlib

        ctx = contextlib.nullcontext() if (sync or self.world == 1) else self.ddp.no_sync()
        with ctx:
            with self._autocast():
                logits = self.ddp(**b["inputs"])
                loss_sum = sequence_loss(logits, b["labels"], self.cfg.loss_reduction)
            if token_mean:  # every rank knows the global micro-batch, so no all-reduce is needed
                denom = sum(n_targets(self._tokenized(data, cache, i)) for i in global_idx)
            else:
                denom = self._batch_size(sampler) * self.world
            scaled = loss_sum * weight * self.world / (max(1, denom) * self.cfg.grad_accum)
            scaled.backward()
        shown = b["n_tokens"] if token_mean else len(b["labels"])
        return loss_sum.item() / max(1, shown), b["n_tokens"]

    # ---------------------------------------------------------------- loop
    def fingerprint(self) -> str:
        d = dataclasses.asdict(self.cfg)
        for k in (
            "output_dir",
            "steps",
            "save_every",
            "threads",
            "eval_tasks",
            "eval_limit",
            "log_every",
            "deterministic",
        ):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        self._maybe_resume()
        metrics_path = self.out / "metrics.jsonl"
        t_start = time.perf_counter()
        steps_log = ProgressLog("step", cfg.steps, unit="step", start=self.step)  # ETA from this run's steps
        last: dict[str, Any] = {}
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            lv = ll = 0.0
            ntok = 0
            for k in range(cfg.grad_accum):
                last_micro = k == cfg.grad_accum - 1
                if self.vs:
                    has_lang = self.ls is not None
                    v, n = self._micro(
                        self.vision, self._tok_cache, self.vs, cfg.vision_weight, sync=last_micro and not has_lang
                    )
                    lv += v / cfg.grad_accum
                    ntok += n
                if self.ls:
                    v, n = self._micro(
                        self.language, self._tok_cache_lang, self.ls, cfg.language_weight, sync=last_micro
                    )
                    ll += v / cfg.grad_accum
                    ntok += n
            params = [p for _, p in self.trainable()]
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip)) if cfg.clip else 0.0
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            last = {
                "step": self.step,
                "loss_vl": round(lv, 5) if self.vs else None,
                "loss_lang": round(ll, 5) if self.ls else None,
                "lr": self.scheduler.get_last_lr()[0],
                "grad_norm": round(gnorm, 4),
                "tokens": ntok,
                "step_s": round(time.perf_counter() - t0, 4),
                "elapsed_s": round(time.perf_counter() - t_start, 2),
            }
            if self.rank == 0:
                with metrics_path.open("a") as f:
                    f.write(json.dumps(last) + "\n")
                if self.step % cfg.log_every == 0 or self.step in (1, cfg.steps):
                    steps_log.update(
                        self.step,
                        f"loss_vl {last['loss_vl']} loss_lang {last['loss_lang']} lr {last['lr']:.2e}",
                        force=True,
                    )
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
                self.save()
        self.save(final=True)
        if dist.is_initialized():
            dist.barrier()
        return last

    # ---------------------------------------------------------------- saving
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.trainable()}

    def _state_path(self) -> Path:
        return self.out / "state" / "last.pt"

    def _maybe_resume(self) -> None:
        path = self._state_path()
        if not path.is_file() or not self.cfg.resume:
            return
        st = torch.load(path, map_location="cpu", weights_only=True)
        if st["fingerprint"] != self.fingerprint():
            raise UserError(
                "the recipe changed since the saved training state; use another --output-dir or delete "
                "its state/ folder",
                path,
            )
        params = dict(self.trainable())
        with torch.no_grad():
            for n, t in st["params"].items():
                params[n].copy_(t.to(params[n].device))
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.step = int(st["step"])
        if self.vs:
            self.vs.load(st["vision_sampler"])
            self._queues[id(self.vs)] = [list(b) for b in st.get("vision_queue", [])]
        if self.ls:
            self.ls.load(st["language_sampler"])
            self._queues[id(self.ls)] = [list(b) for b in st.get("language_queue", [])]
        torch.set_rng_state(st["rng"])
        log.info("resumed from %s at step %d", path, self.step)

    def save(self, final: bool = False) -> Path | None:
        if self.rank != 0:
            return None
        cfg = self.cfg
        state = {
            "fingerprint": self.fingerprint(),
            "step": self.step,
            "params": self._trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "vision_sampler": self.vs.state() if self.vs else None,
            "language_sampler": self.ls.state() if self.ls else None,
            "rng": torch.get_rng_state(),
            "vision_queue": self._queues.get(id(self.vs), []) if self.vs else [],
            "language_queue": self._queues.get(id(self.ls), []) if self.ls else [],
        }
        sp = self._state_path()
        sp.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(sp, "wb", encoding=None) as f:
            torch.save(state, f)
        spec = self.loaded.spec.to_dict()
        name = "final" if final else f"checkpoint_{self.step}"
        if cfg.mode == "lora":
            assert self.lora is not None  # set up for lora mode
            meta = {"step": self.step, "recipe": str(cfg.source) if cfg.source else None}
            peft_dir = save_peft_adapter(
                self.model, self.lora, self.out / name, model_spec=spec, base_name=self.loaded.spec.name, extra=meta
            )
            save_mmgpt_checkpoint(
                self.model,
                self.lora,
                self.out / f"{name}.pt",
                kind="trainer",
                epoch=self.vs.epoch if self.vs else 0,
                step=self.step,
                model_spec=spec,
                optimizer_state=None,
            )
            log.info("saved %s and %s.pt", peft_dir, name)
            return peft_dir
        from .export_base import export_base_model

        d = export_base_model(self.loaded, self.out / name)
        log.info("saved base model %s", d)
        return d


@contextlib.contextmanager
def deterministic_kernels(cfg: TrainConfig) -> Iterator[bool]:
    """``torch.use_deterministic_algorithms`` for the training only (restored afterwards: evaluation
    in the same process is unaffected)."""
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    on = cfg.deterministic == "always" or (cfg.deterministic == "cpu" and not cuda)
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if on and cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on or before, warn_only=warn_only and not on)
    try:
        yield on
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    with deterministic_kernels(cfg):
        trainer = Trainer(cfg)
        result = trainer.train()
    if trainer.rank == 0:
        atomic_write_json(
            Path(cfg.output_dir) / "train_summary.json",
            {
                "last": result,
                "fingerprint": trainer.fingerprint(),
                "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
                "world_size": trainer.world,
                "n_vision_examples": len(trainer.vision),
                "n_language_examples": len(trainer.language),
            },
        )
    return result
