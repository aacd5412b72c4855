"""The ``causal-lm`` family: a text-only Hugging Face causal language model behind the model seam.

Any local folder ``AutoModelForCausalLM`` loads (``lm``; ``tokenizer`` defaults to the same folder), a
hub name when it is cached, or a config-only folder with ``init = "random"`` (the shipped
``tiny-lm`` preset: the tiny preset's LLaMA config, seeded weights). No checkpoint on top: point
``lm`` at fine-tuned weights instead. It answers text-only requests; requests with images are
refused by the engine before any work.

Generation: rows left-padded, Hugging Face ``generate`` with the stop rule's tokens as end of
sequence, each row cut after its first stop token (the Flamingo family's rule). Ranking: every
candidate appended to its context's tokens (alone, or as tokenized together with the context:
the same two rules as the Flamingo ranker, :mod:`mmgpt_eval.model.flamingo.rank`), all rows of a
batch right-padded into one forward, the score the sum of the candidate tokens' log-probabilities.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import UserError
from ..generation_settings import GenerationSettings
from .batching import auto_rows
from .build import DTYPES, load_hf_tokenizer, load_lm, resolve_device
from .seam import (
    STOP_END_OF_CHUNK,
    STOP_END_OF_TURN,
    STOP_EOS,
    STOP_RULES,
    CandidateScore,
    Generation,
    PromptInput,
    RankInput,
    config_context_limit,
)
from .spec import ModelSpec

# tokens chat models end an assistant turn with (checked in this order; the first in the vocabulary wins)
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


@dataclass
class LoadedCausalLM:
    model: Any  # a transformers PreTrainedModel with a causal-LM head
    tokenizer: Any
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    notes: list[str] = field(default_factory=list)
    load_seconds: float = 0.0
    checkpoint: None = None  # the family loads no checkpoint on top of the LM's own weights
    base_checkpoint_sha256: None = None

    def provenance(self) -> dict[str, Any]:
        return {
            "model_spec": self.spec.to_dict(),
            "checkpoint": None,
            "openflamingo_checkpoint_sha256": None,
            "load_reports": [],
            "notes": self.notes,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def load_tokenizer(spec: ModelSpec):
    tok = load_hf_tokenizer(spec)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # padding is masked out; no new token, so the embeddings stay as they are
    tok.padding_side = "left"
    return tok


def load_causal_lm(
    spec: ModelSpec,
    ckpt: Any = None,
    *,
    allow_partial: bool = False,
    trust_checkpoint: bool = False,
    lora_alpha: float | None = None,
    device: str | None = None,
) -> LoadedCausalLM:
    """A ``causal-lm`` spec -> the loaded model (seeded when ``init = "random"``)."""
    if ckpt is not None:
        raise UserError(
            f"model family causal-lm takes no checkpoint (--ckpt {ckpt}); set lm to the folder of the "
            f"fine-tuned weights instead",
            spec.source or spec.name,
        )
    t0 = time.perf_counter()
    notes: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        tokenizer = load_tokenizer(spec)
        model = load_lm(spec)
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no end-of-sequence token", spec.source or spec.name)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < len(tokenizer):
        notes.append(f"LM embeddings resized {rows} -> {len(tokenizer)}")
        model.resize_token_embeddings(len(tokenizer))
    dev = resolve_device(device or spec.device)
    dtype = DTYPES[spec.precision]
    if dev.type == "cpu" and dtype == torch.float16:
        notes.append(
            "precision fp16 requested on CPU, where half-precision matmuls are slow or missing: running fp32 instead"
        )
        dtype = torch.float32
    model.to(device=dev, dtype=dtype)
    model.requires_grad_(False)
    model.eval()
    return LoadedCausalLM(model, tokenizer, spec, dev, dtype, notes, time.perf_counter() - t0)


def candidate_token_ids(tokenizer: Any, context: str, context_ids: list[int], candidate: str, joint: bool) -> list[int]:
    """A candidate's tokens after its context: tokenized alone, or as they read in context + candidate
    (``context`` then has its trailing spaces already moved to the candidate)."""
    if joint:
        ids = tokenizer(context + candidate)["input_ids"][len(context_ids) :]
    else:
        ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"candidate {candidate!r} has no tokens")
    return ids


class CausalLMModel:
    """:class:`~mmgpt_eval.model.seam.EvalModel` over a text-only causal LM."""

    family = "causal-lm"
    accepts_images = False

    def __init__(self, loaded: LoadedCausalLM, *, share_prefix: bool = True):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device

    def stop_token_ids(self, stop: str) -> list[int]:
        eos = self.tokenizer.eos_token_id
        vocab = self.tokenizer.get_vocab()
        if stop == STOP_EOS:
            return [eos]
        if stop == STOP_END_OF_TURN:
            turn = [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab][:1]
            return turn + [eos] if turn and turn[0] != eos else [eos]
        if stop == STOP_END_OF_CHUNK:
            if "<|endofchunk|>" in vocab:
                return [vocab["<|endofchunk|>"]]
            raise UserError("stop rule end-of-chunk needs <|endofchunk|>, which this causal LM's tokenizer lacks")
        raise ValueError(f"unknown stop rule {stop!r}; known: {', '.join(STOP_RULES)}")

    def encode_images(self, prompts: Sequence[PromptInput]) -> None:
        if any(p.images for p in prompts):
            raise UserError("model family causal-lm takes no images")
        return None

    def batch_capacity(self, requested: int, num_beams: int = 1, prompt_tokens: int | None = None) -> int:
        return requested if requested and requested > 0 else auto_rows(self.device.type, num_beams, prompt_tokens)

    def prompt_tokens(self, prompts: Sequence[PromptInput | RankInput]) -> list[int]:
        return [len(ids) for ids in self.tokenizer([p.text for p in prompts])["input_ids"]]

    def context_limit(self) -> int | None:
        return config_context_limit(getattr(self.model, "config", None))

    def text_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def provenance(self) -> dict[str, Any]:
        return self.loaded.provenance()

    @torch.inference_mode()
    def generate_batch(
        self, prompts: Sequence[PromptInput], settings: GenerationSettings, stop: str
    ) -> list[Generation]:
        if not prompts:
            return []
        self.encode_images(prompts)
        eos = self.stop_token_ids(stop)
        rows: list[list[int]] = self.tokenizer([p.text for p in prompts])["input_ids"]
        pad = self.tokenizer.pad_token_id
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        kwargs = settings.hf_kwargs()
        kwargs.update(eos_token_id=eos if len(eos) > 1 else eos[0], pad_token_id=pad)
        rng = contextlib.nullcontext()
        if settings.do_sample:
            rng = torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])
        with rng:
            if settings.do_sample:
                torch.manual_seed(settings.seed)
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        stops = set(eos)
        results = []
        for row, prompt_ids in enumerate(rows):
            results.append(Generation.cut(self.tokenizer, prompt_ids, out[row, width:].tolist(), stops))
        return results

    @torch.inference_mode()
    def score_batch(self, inputs: Sequence[RankInput]) -> list[list[CandidateScore]]:
        """Every (context, candidate) pair as one right-padded row of a single forward."""
        if not inputs:
            return []
        self.encode_images([x.prompt() for x in inputs])
        texts = [x.text.rstrip(" ") if x.joint else x.text for x in inputs]
        ctx_rows: list[list[int]] = self.tokenizer(texts)["input_ids"]
        pairs: list[tuple[list[int], list[int]]] = []  # (context tokens, candidate tokens)
        for x, text, ctx in zip(inputs, texts, ctx_rows):
            if not ctx:
                raise ValueError(f"context {x.text!r} has no tokens to score candidates after")
            for c in x.candidates:
                pairs.append((ctx, candidate_token_ids(self.tokenizer, text, ctx, x.text[len(text) :] + c, x.joint)))
        width = max(len(a) + len(b) for a, b in pairs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(pairs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for i, (a, b) in enumerate(pairs):
            ids[i, : len(a) + len(b)] = torch.tensor(a + b, dtype=torch.long)
            mask[i, : len(a) + len(b)] = 1
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
        scores: list[CandidateScore] = []
        for i, (a, b) in enumerate(pairs):
            at = logits[i, len(a) - 1 : len(a) + len(b) - 1]  # the positions that predict the candidate's tokens
            target = torch.tensor(b, device=at.device)
            lp = torch.log_softmax(at, dim=-1).gather(1, target[:, None]).squeeze(1)
            scores.append(
                CandidateScore(
                    sum_logprob=float(lp.double().sum()),
                    n_tokens=len(b),
                    is_greedy=bool((at.argmax(-1) == target).all()),
                )
            )
        out, k = [], 0
        for x in inputs:
            out.append(scores[k : k + len(x.candidates)])
            k += len(x.candidates)
        return out
