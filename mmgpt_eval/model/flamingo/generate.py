"""Batched generation: left padding, KV cache, vision features once per distinct image, and the
prompt prefix every row of a batch shares computed once.

Vision features: each distinct image (by key) is encoded once per batch, and kept in a bounded LRU
cache across batches (``feature_cache_bytes``), so a VQA set's several questions about one image
cost one encoding however the runner's length sort spreads them over batches. A Generator lives for
one set of weights (the runner makes one per checkpoint); images without a stable key (in-memory
objects) are never cached across calls.

Shared prefix: MultiModal-GPT's prompts open with the same ~25-token preamble. When a batch's rows
share a token prefix whose hidden states cannot depend on the image -- text-only rows, or the tokens
before the first ``<image>`` under v2 semantics, where they get exactly zero cross-attention (v1 lets
them attend the image, so v1 rows with images never share) -- that prefix is run once at batch size
1, its KV cache is repeated to the batch, and each row's remaining tokens are left-padded after it:
``[prefix][pad][rest]``. Positions come from the attention mask, so every token keeps the position it
has without sharing. Greedy and sampled generation only; ``share_prefix=False`` turns it off.

Beam search: HF ``generate`` copies every prompt ``num_beams`` times before its first forward, so each
prompt would be run once per beam although the copies are identical. Here that first forward runs each
prompt once (the batch's own rows, as a batch without beams would) and its logits and KV cache are
repeated to the beams (:meth:`MMFlamingoLMMixin.prompt_once_per_beam`); decoding then goes on per
beam. The whole prompt is computed in one forward as without sharing, so the tokens equal those of
``share_prefix=False`` (tested, v1 and v2). Off with ``share_prefix=False``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Sequence

import torch

from ...compat import lm_cache_kwarg, output_cache
from ...generation_settings import GenerationSettings
from ...images import open_image
from ..batching import auto_rows, batches_by_image_count, halving_on_oom, is_oom  # noqa: F401 (re-exported)
from ..build import LoadedModel
from ..seam import STOP_END_OF_CHUNK, STOP_END_OF_TURN, STOP_EOS, STOP_RULES, Generation, PromptInput


class Generator:
    """Generation on a loaded model. One call = one batch of homogeneous rows (same image count)."""

    MIN_SHARED_PREFIX = 4  # tokens; shorter shared prefixes are not worth a separate forward
    FEATURE_CACHE_BYTES = 512 * 2**20

    def __init__(self, loaded: LoadedModel, share_prefix: bool = True, feature_cache_bytes: int | None = None):
        self.lm = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.share_prefix = share_prefix
        self.feature_cache_bytes = self.FEATURE_CACHE_BYTES if feature_cache_bytes is None else feature_cache_bytes
        self._features: OrderedDict[str, torch.Tensor] = OrderedDict()  # image key -> (n, d), LRU order
        self._feature_bytes = 0
        self._cap: int | None = None  # largest batch known to fit (set by out-of-memory back-off)
        self.oom_events = 0
        self.shared_prefix_tokens = 0  # prompt tokens not recomputed thanks to prefix sharing (across rows)
        self.beam_prompt_tokens = 0  # prompt tokens not recomputed per beam under beam search
        self.images_encoded = 0
        self.feature_cache_hits = 0

    def clear_caches(self) -> None:
        """Forget cached vision features (call after changing the vision weights)."""
        self._features.clear()
        self._feature_bytes = 0

    def batch_cap(self, requested: int, num_beams: int = 1) -> int:
        """The batch size to use: ``requested`` (0 = auto: start large -- over the beams, since beam search
        runs prompts x beams rows), never above a size that has run out of memory before."""
        start = requested if requested and requested > 0 else auto_rows(self.lm.device.type, num_beams)
        return min(start, self._cap) if self._cap else start

    # ------------------------------------------------------------------ helpers
    def eos_token_id(self, stop: str) -> int:
        """The token that ends a generation under the symbolic stop rule ``stop``: ``<|endofchunk|>``
        for the end of a chunk, the LM's EOS for the end of the sequence or of a turn (MultiModal-GPT
        ends its responses with ``</s>``)."""
        if stop == STOP_END_OF_CHUNK:
            return self.lm.eoc_token_id
        if stop in (STOP_EOS, STOP_END_OF_TURN):
            return self.lm.lm_eos_token_id
        raise ValueError(f"unknown stop rule {stop!r}; known: {', '.join(STOP_RULES)}")

    def pixels(self, img: Any) -> torch.Tensor:
        return self.lm.image_processor(open_image(img))

    def _remember(self, key: str, feats: torch.Tensor) -> None:
        if key.startswith("obj:"):
            return  # an in-memory object's id may be reused by another image later
        size = feats.numel() * feats.element_size()
        if size > self.feature_cache_bytes:
            return
        self._features[key] = feats
        self._feature_bytes += size
        while self._feature_bytes > self.feature_cache_bytes:
            _, old = self._features.popitem(last=False)
            self._feature_bytes -= old.numel() * old.element_size()

    def vision_features(self, prompts: Sequence[PromptInput]) -> torch.Tensor | None:
        """(B, T_img, n, d) features; each distinct image encoded once (and then taken from the cache)."""
        n_img = {len(p.images) for p in prompts}
        if len(n_img) != 1:
            raise ValueError("a batch must have the same number of images in every row")
        if n_img.pop() == 0:
            return None
        slot: dict[str, int] = {}
        images: list[Any] = []
        index: list[list[int]] = []
        for p in prompts:
            row = []
            for img, key in zip(p.images, p.keys()):
                if key not in slot:
                    slot[key] = len(images)
                    images.append(img)
                row.append(slot[key])
            index.append(row)
        keys = list(slot)
        per_key: dict[str, torch.Tensor] = {}
        for k in keys:
            if k in self._features:
                self._features.move_to_end(k)
                per_key[k] = self._features[k]
                self.feature_cache_hits += 1
        missing = [k for k in keys if k not in per_key]
        if missing:
            px = torch.stack([self.pixels(images[slot[k]]) for k in missing])
            px = px.to(self.lm.device, dtype=self.lm.dtype)[:, None, None]  # U,1,1,C,H,W
            fresh = self.model.encode_vision(px)[:, 0]  # U, n, d
            self.images_encoded += len(missing)
            for k, f in zip(missing, fresh):
                per_key[k] = f
                self._remember(k, f)
        feats = torch.stack([per_key[k] for k in keys])
        idx = torch.tensor(index, device=feats.device)
        return feats[idx]  # B, T, n, d

    def shared_prefix_length(
        self, rows: Sequence[Sequence[int]], has_images: bool, settings: GenerationSettings
    ) -> int:
        """How many leading tokens all ``rows`` share that may be computed once (0: none)."""
        if not self.share_prefix or len(rows) < 2 or not settings.use_cache or settings.num_beams != 1:
            return 0
        if has_images and not self._text_before_image_is_image_free():
            return 0  # v1: positions before <image> attend the image
        n = min(len(r) for r in rows) - 1  # every row keeps at least one token for the prefill
        first = rows[0]
        for r in rows[1:]:
            k = 0
            while k < n and r[k] == first[k]:
                k += 1
            n = k
        media = self.lm.media_token_id
        if has_images and media in first[:n]:
            n = list(first[:n]).index(media)  # the image token and what follows depend on the image
        return n if n >= self.MIN_SHARED_PREFIX else 0

    def _text_before_image_is_image_free(self) -> bool:
        """v2 with attention to the immediate image only: positions before the first ``<image>`` get
        exactly zero cross-attention output (the gated FF does not look at the image)."""
        blocks = [b for b in self.model.lang_encoder.gated_cross_attn_layers if b is not None]
        return getattr(self.model, "flamingo_version", "v1") == "v2" and all(
            b.attn.only_attend_immediate_media for b in blocks
        )

    def _prefix_cache(self, prefix: list[int], batch: int, feats: torch.Tensor | None):
        """KV cache of ``prefix`` computed at batch size 1, repeated to ``batch`` rows."""
        ids = torch.tensor([prefix], device=self.lm.device)
        # v2: a prefix without <image> gets zero cross-attention, so any row's features give the same states
        out = self.model(
            None,
            ids,
            attention_mask=torch.ones_like(ids),
            use_cache=True,
            vision_features=None if feats is None else feats[:1],
        )
        cache = output_cache(out)
        cache.batch_repeat_interleave(batch)
        return cache

    def shares_beam_prompt(self, settings: GenerationSettings) -> bool:
        """Whether beam search runs each prompt once (not once per beam) in its first forward."""
        return self.share_prefix and settings.num_beams > 1 and settings.use_cache and not settings.do_sample

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[PromptInput],
        settings: GenerationSettings,
        stop: str = STOP_EOS,
        eos_token_id: int | list[int] | None = None,
    ) -> list[Generation]:
        if not prompts:
            return []
        eos = eos_token_id if eos_token_id is not None else self.eos_token_id(stop)
        eos_set = set(eos) if isinstance(eos, list) else {eos}
        rows: list[list[int]] = self.tokenizer([p.text for p in prompts])["input_ids"]
        feats = self.vision_features(prompts)
        kwargs = settings.hf_kwargs()
        kwargs["eos_token_id"] = eos
        pad = self.tokenizer.pad_token_id
        kwargs["pad_token_id"] = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)
        n_shared = self.shared_prefix_length(rows, feats is not None, settings)
        # rows left-padded after the shared prefix: [prefix][pad][rest] (no prefix: plain left padding)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), kwargs["pad_token_id"], dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            rest = r[n_shared:]
            input_ids[i, :n_shared] = torch.tensor(r[:n_shared], dtype=torch.long)
            input_ids[i, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            attention_mask[i, :n_shared] = 1
            attention_mask[i, width - len(rest) :] = 1
        input_ids, attention_mask = input_ids.to(self.lm.device), attention_mask.to(self.lm.device)
        rng = contextlib.nullcontext()
        if settings.do_sample:
            rng = torch.random.fork_rng(devices=[self.lm.device] if self.lm.device.type == "cuda" else [])
        with rng, self.model.media_attention_fast_path():
            if n_shared:
                kwargs[lm_cache_kwarg(self.model.lang_encoder)] = self._prefix_cache(
                    rows[0][:n_shared], len(rows), feats
                )
                self.shared_prefix_tokens += n_shared * (len(rows) - 1)
            if settings.do_sample:
                torch.manual_seed(settings.seed)
            beams = settings.num_beams if self.shares_beam_prompt(settings) else 0
            with self.model.lang_encoder.prompt_once_per_beam(beams) as used:
                out = self.model.generate(
                    None, input_ids, attention_mask=attention_mask, vision_features=feats, **kwargs
                )
            if used():
                self.beam_prompt_tokens += int(attention_mask.sum()) * (beams - 1)
        results = []
        for row, prompt_ids in enumerate(rows):
            results.append(Generation.cut(self.tokenizer, prompt_ids, out[row, width:].tolist(), eos_set))
        return results

    def generate_grouped(
        self, prompts: Sequence[PromptInput], settings: GenerationSettings, stop: str = STOP_EOS, batch_size: int = 8
    ) -> list[Generation]:
        """Rows grouped by image count and length, batched, returned in input order."""
        out: list[Generation | None] = [None] * len(prompts)
        for batch in batches_by_image_count(prompts, batch_size):
            for j, g in zip(batch, self._generate_backoff([prompts[j] for j in batch], settings, stop)):
                out[j] = g
        return out  # type: ignore[return-value]

    def _generate_backoff(
        self, prompts: Sequence[PromptInput], settings: GenerationSettings, stop: str
    ) -> list[Generation]:
        """Generate; on out-of-memory halve the batch (remembered for later batches) and retry."""
        return halving_on_oom(self, lambda part: self.generate(part, settings, stop), prompts)
