"""OpenFlamingo with the two cross-attention semantics real checkpoints were trained with.

Built on the real open-flamingo 2.0.1 classes (subclassed, never patched):

* ``flamingo_version = "v2"``: open-flamingo 2.x. A text position attends to the latest image at or
  before it (``text_time = cumsum(media)``); during cached generation new tokens attend to the last
  image.
* ``flamingo_version = "v1"``: OpenFlamingo 0.0.2, vendored by MultiModal-GPT, with
  ``attend_previous=False`` (MultiModal-GPT never enabled media-placement augmentation). A position
  attends to image ``cumsum(media) + (1 if not a media token)``; values above the row's image count
  mean no image. With one image per prompt only the positions up to and including ``<image>``
  cross-attend; the instruction, the response and every generated token get exactly zero
  cross-attention output (the gated FF still runs on them). Media locations are recomputed from the
  ``input_ids`` of every call, so cached and uncached generation agree.

Both versions: prompts with no image take MultiModal-GPT's language-only path, which skips the gated
cross-attention blocks entirely (FF included). ``generate`` always cleans up conditioning state, even
when it raises, and never emits ``<image>``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from einops import rearrange
from einops_exts import rearrange_many
from open_flamingo import Flamingo
from open_flamingo.src.flamingo_lm import FlamingoLayer
from open_flamingo.src.helpers import FeedForward, GatedCrossAttentionBlock, MaskedCrossAttention, PerceiverResampler
from torch import nn

from ..compat import CompatFlamingoLMMixin, lm_cache_kwarg, lm_forward

FLAMINGO_VERSIONS = ("v1", "v2")


class V1MaskedCrossAttention(MaskedCrossAttention):
    """Masked cross-attention with OpenFlamingo v1 text-time semantics (``attend_previous=False``)."""

    def forward(self, x, media, media_locations=None, use_cached_media=False):
        if media_locations is None:
            raise ValueError("v1 cross-attention needs media_locations")
        loc = media_locations.bool()
        n_media = loc.sum(dim=-1, keepdim=True)
        text_time = loc.long().cumsum(dim=-1) + (~loc).long()
        text_time = text_time.masked_fill(text_time > n_media, 0)
        return self._attend(x, media, text_time)

    def _attend(self, x, media, text_time):
        # Same projections, scaling and masking rule as upstream; only text_time differs.
        n_img, n_lat = media.shape[1], media.shape[2]
        h = self.heads
        x = self.norm(x)
        q = self.to_q(x)
        k, v = self.to_kv(rearrange(media, "b t n d -> b (t n) d")).chunk(2, dim=-1)
        q, k, v = rearrange_many((q, k, v), "b n (h d) -> b h n d", h=h)
        sim = torch.einsum("... i d, ... j d -> ... i j", q * self.scale, k)
        media_time = torch.arange(n_img, device=x.device) + 1
        media_time = media_time.repeat_interleave(n_lat)  # one entry per latent
        tt = text_time[:, None, :, None]  # b 1 i 1
        if self.only_attend_immediate_media:
            allowed = tt == media_time[None, None, None, :]
        else:
            allowed = tt >= media_time[None, None, None, :]
        sim = sim.masked_fill(~allowed, -torch.finfo(sim.dtype).max)
        sim = sim - sim.amax(dim=-1, keepdim=True).detach()
        attn = sim.softmax(dim=-1)
        if self.only_attend_immediate_media:
            attn = attn.masked_fill(tt == 0, 0.0)
        out = torch.einsum("... i j, ... j d -> ... i d", attn, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class MMGatedCrossAttentionBlock(GatedCrossAttentionBlock):
    """Upstream gated block; for v1 its attention uses :class:`V1MaskedCrossAttention`.

    Parameters are created in upstream's order, so seeded initialisation is identical.
    """

    def __init__(self, *, dim, dim_visual, version: str = "v2", dim_head=64, heads=8, ff_mult=4,
                 only_attend_immediate_media=True):
        nn.Module.__init__(self)
        attn_cls = V1MaskedCrossAttention if version == "v1" else MaskedCrossAttention
        self.attn = attn_cls(dim=dim, dim_visual=dim_visual, dim_head=dim_head, heads=heads,
                             only_attend_immediate_media=only_attend_immediate_media)
        self.attn_gate = nn.Parameter(torch.tensor([0.0]))
        self.ff = FeedForward(dim, mult=ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([0.0]))


class MMFlamingoLayer(FlamingoLayer):
    """FlamingoLayer that can skip its gated block (MultiModal-GPT's language-only path)."""

    def __init__(self, gated_cross_attn_layer, decoder_layer, gradient_checkpointing=False):
        super().__init__(gated_cross_attn_layer, decoder_layer, gradient_checkpointing)
        self.use_cached_media = False
        self.only_lang_x = False

    def forward(self, lang_x, attention_mask=None, **decoder_layer_kwargs):
        if self.only_lang_x or self.gated_cross_attn_layer is None:
            return self.decoder_layer(lang_x, attention_mask=attention_mask, **decoder_layer_kwargs)
        return super().forward(lang_x, attention_mask=attention_mask, **decoder_layer_kwargs)


class MMFlamingoLMMixin(CompatFlamingoLMMixin):
    """Flamingo LM mixin with v1/v2 semantics and a language-only switch.

    ``position_ids`` and ``logits_to_keep`` are named in the signature so that ``generate`` builds
    mask-based position ids (left padding then gives the same positions as no padding) and computes
    only the last position's logits.
    """

    flamingo_version = "v2"

    def init_flamingo(self, media_token_id, lang_hidden_size, vis_hidden_size, cross_attn_every_n_layers,
                      gradient_checkpointing):
        self.old_decoder_blocks = self._get_decoder_layers()
        self.gated_cross_attn_layers = nn.ModuleList(
            [
                MMGatedCrossAttentionBlock(dim=lang_hidden_size, dim_visual=vis_hidden_size,
                                           version=self.flamingo_version)
                if (layer_idx + 1) % cross_attn_every_n_layers == 0
                else None
                for layer_idx, _ in enumerate(self._get_decoder_layers())
            ]
        )
        self.init_flamingo_layers(gradient_checkpointing)
        self.media_token_id = media_token_id
        self.initialized_flamingo = True
        self._use_cached_vision_x = False

    def init_flamingo_layers(self, gradient_checkpointing):
        self._set_decoder_layers(
            nn.ModuleList(
                [
                    MMFlamingoLayer(g, d, gradient_checkpointing)
                    for g, d in zip(self.gated_cross_attn_layers, self.old_decoder_blocks)
                ]
            )
        )

    def set_text_only(self, flag: bool) -> None:
        for layer in self._get_decoder_layers():
            layer.only_lang_x = flag

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, logits_to_keep=0, **kwargs):
        if not self.initialized_flamingo:
            raise ValueError("Flamingo layers are not initialized. Please call `init_flamingo` first.")
        kwargs["position_ids"] = position_ids
        kwargs["logits_to_keep"] = logits_to_keep
        layers = self._get_decoder_layers()
        if self.flamingo_version == "v1" or layers[0].only_lang_x:
            media_locations = input_ids == self.media_token_id
            for layer in layers:
                layer.condition_media_locations(media_locations)
                layer.condition_use_cached_media(False)
            return lm_forward(self, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return super().forward(input_ids, attention_mask, **kwargs)


class MMFlamingo(Flamingo):
    """open-flamingo's Flamingo with version semantics, a language-only path, safe generation,
    precomputed vision features, and an optionally smaller Perceiver."""

    def __init__(self, vision_encoder, lang_encoder, eoc_token_id: int, media_token_id: int, vis_dim: int,
                 cross_attn_every_n_layers: int = 1, flamingo_version: str = "v2", perceiver_depth: int = 6,
                 perceiver_num_latents: int = 64, gradient_checkpointing: bool = False):
        if flamingo_version not in FLAMINGO_VERSIONS:
            raise ValueError(f"flamingo_version must be one of {FLAMINGO_VERSIONS}, got {flamingo_version!r}")
        if not isinstance(lang_encoder, MMFlamingoLMMixin):
            raise TypeError("lang_encoder must be extended with MMFlamingoLMMixin")
        lang_encoder.flamingo_version = flamingo_version
        super().__init__(vision_encoder, lang_encoder, eoc_token_id, media_token_id, vis_dim,
                         cross_attn_every_n_layers=cross_attn_every_n_layers,
                         gradient_checkpointing=gradient_checkpointing)
        if (perceiver_depth, perceiver_num_latents) != (6, 64):
            self.perceiver = PerceiverResampler(dim=vis_dim, depth=perceiver_depth,
                                                num_latents=perceiver_num_latents)
        self.flamingo_version = flamingo_version
        # open-flamingo runs the vision encoder under no_grad; training from scratch needs gradients.
        self.train_vision_encoder = False

    # ----------------------------------------------------------------- vision
    def encode_vision(self, vision_x: torch.Tensor) -> torch.Tensor:
        """(B, T_img, F=1, C, H, W) pixels -> (B, T_img, n_latents, vis_dim) Perceiver latents."""
        if vision_x.ndim != 6:
            raise ValueError("vision_x should be of shape (b, T_img, F, C, H, W)")
        b, t, f = vision_x.shape[:3]
        if f != 1:
            raise ValueError("Only single frame supported")
        x = rearrange(vision_x, "b T F c h w -> (b T F) c h w")
        with torch.set_grad_enabled(self.train_vision_encoder and torch.is_grad_enabled()):
            tokens = self.vision_encoder(x)[1]
        tokens = rearrange(tokens, "(b T F) v d -> b T F v d", b=b, T=t, F=f)
        return self.perceiver(tokens)

    def _encode_vision_x(self, vision_x: torch.Tensor):
        self._condition_vis_x(self.encode_vision(vision_x))

    def _condition_vis_x(self, features: torch.Tensor) -> None:
        for layer in self.lang_encoder._get_decoder_layers():
            layer.condition_vis_x(features)

    @contextlib.contextmanager
    def text_only(self) -> Iterator[None]:
        self.lang_encoder.set_text_only(True)
        try:
            yield
        finally:
            self.lang_encoder.set_text_only(False)

    # ---------------------------------------------------------------- forward
    def forward(self, vision_x, lang_x, attention_mask=None, labels=None, clear_conditioned_layers=True,
                past_key_values=None, use_cache=False, vision_features=None, position_ids=None, logits_to_keep=0):
        lm = self.lang_encoder
        if not lm.initialized_flamingo:
            raise ValueError("Flamingo layers are not initialized. Please call `init_flamingo` first.")
        extra = {"position_ids": position_ids}
        if logits_to_keep:
            extra["logits_to_keep"] = logits_to_keep  # only the last positions' logits (ranking contexts)
        if past_key_values is not None:
            extra[lm_cache_kwarg(lm)] = past_key_values
        if vision_x is None and vision_features is None and not lm._use_cached_vision_x:
            with self.text_only():
                return lm(input_ids=lang_x, attention_mask=attention_mask, labels=labels, use_cache=use_cache,
                          **extra)
        if lm._use_cached_vision_x:
            if vision_x is not None or vision_features is not None:
                raise ValueError("Expect vision_x to be None when media has been cached using cache_media(). "
                                 "Try uncache_media() first.")
        else:
            self._condition_vis_x(vision_features if vision_features is not None else self.encode_vision(vision_x))
            self._condition_media_locations(input_ids=lang_x)
        try:
            return lm(input_ids=lang_x, attention_mask=attention_mask, labels=labels, use_cache=use_cache, **extra)
        finally:
            if clear_conditioned_layers:
                lm.clear_conditioned_layers()

    # --------------------------------------------------------------- generate
    def default_eos_token_id(self) -> int | list[int] | None:
        """v2 stops at ``<|endofchunk|>`` (open-flamingo 2.x default); v1 (MultiModal-GPT) at the LM's
        own EOS, ``</s>`` for LLaMA."""
        if self.flamingo_version == "v2":
            return self.eoc_token_id
        return self.lang_encoder.generation_config.eos_token_id

    def generate(self, vision_x, lang_x, attention_mask=None, vision_features=None, **kwargs):
        """Generate continuations of ``lang_x``; rows of a batch must all have images or all none.

        ``vision_features`` (B, T_img, n, d) may replace ``vision_x`` (computed once per distinct
        image by the caller). Returns prompt + generated ids, like HF ``generate``.
        """
        lm = self.lang_encoder
        kwargs.setdefault("eos_token_id", self.default_eos_token_id())
        suppress = list(kwargs.pop("suppress_tokens", None) or [])
        if self.media_token_id not in suppress:
            suppress.append(self.media_token_id)
        kwargs["suppress_tokens"] = suppress
        if vision_x is None and vision_features is None:
            with self.text_only():
                return lm.generate(input_ids=lang_x, attention_mask=attention_mask, **kwargs)
        feats = vision_features if vision_features is not None else self.encode_vision(vision_x)
        expand = max(int(kwargs.get("num_beams", 1) or 1), int(kwargs.get("num_return_sequences", 1) or 1))
        if expand > 1:
            feats = feats.repeat_interleave(expand, dim=0)
        try:
            lm._use_cached_vision_x = True
            self._condition_vis_x(feats)
            return lm.generate(input_ids=lang_x, attention_mask=attention_mask, **kwargs)
        finally:
            lm.clear_conditioned_layers()
            lm._use_cached_vision_x = False
