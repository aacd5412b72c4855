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

Media attention fast path (:meth:`MMFlamingo.media_attention_fast_path`, entered by mmgpt-eval's
Generator around each batch; off otherwise, so OpenFlamingo's own loop run on this model computes as
upstream does): the image latents' keys and values are computed once per conditioned media tensor --
upstream recomputes ``to_kv`` over every image latent in every forward, i.e. at every decoding step --
and a call in which no text position may attend any image (v1's tokens after the image, which is every
decoding step) returns ``to_out`` of zeros without computing the attention, which is exactly what the
attention gives there. Both are exact: the same operations on the same inputs (tested bitwise against
upstream's forward). Also entered by the Generator: :meth:`MMFlamingoLMMixin.prompt_once_per_beam`, beam
search's first forward run on one copy of each prompt (HF copies every prompt once per beam).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

# compat first: it turns a missing open_flamingo (or one of its needs) into a one-line UserError
from ...compat import CompatFlamingoLMMixin, lm_cache_kwarg, lm_forward, output_cache
from einops import rearrange
from einops_exts import rearrange_many
from open_flamingo import Flamingo
from open_flamingo.src.flamingo_lm import FlamingoLayer
from open_flamingo.src.helpers import FeedForward, GatedCrossAttentionBlock, MaskedCrossAttention, PerceiverResampler
from torch import nn

FLAMINGO_VERSIONS = ("v1", "v2")


class _MediaAttention(MaskedCrossAttention):
    """Upstream's masked cross-attention computation for a given ``text_time`` (None: no masking), with
    the optional fast path (see the module docstring)."""

    fast_path = False  # set per instance by MMFlamingo.media_attention_fast_path
    _kv_memo: tuple | None = None  # (media tensor, k, v) while the fast path is on (one generate call)

    def _media_kv(self, media):
        memo = self._kv_memo
        # the same tensor object: the conditioned features, never modified in place while the fast path is
        # on (inference tensors keep no version counter); the memo holds it, so its id is not reused
        if self.fast_path and memo is not None and memo[0] is media:
            return memo[1], memo[2]
        k, v = self.to_kv(rearrange(media, "b t n d -> b (t n) d")).chunk(2, dim=-1)
        if self.fast_path:
            self._kv_memo = (media, k, v)
        return k, v

    def _attend(self, x, media, text_time):
        # Same projections, scaling and masking rule as upstream's forward.
        n_img, n_lat = media.shape[1], media.shape[2]
        h = self.heads
        if self.fast_path and self.only_attend_immediate_media and text_time is not None and not text_time.any():
            # no position may attend an image: the attention weights are all zeroed, the output is to_out(0)
            return self.to_out(x.new_zeros(*x.shape[:2], self.to_out.in_features))
        x = self.norm(x)
        q = self.to_q(x)
        k, v = self._media_kv(media)
        q, k, v = rearrange_many((q, k, v), "b n (h d) -> b h n d", h=h)
        sim = torch.einsum("... i d, ... j d -> ... i j", q * self.scale, k)
        if text_time is not None:
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
        if text_time is not None and self.only_attend_immediate_media:
            attn = attn.masked_fill(tt == 0, 0.0)
        out = torch.einsum("... i j, ... j d -> ... i d", attn, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class V2MaskedCrossAttention(_MediaAttention):
    """Upstream's masked cross-attention (open-flamingo 2.x semantics): its own forward unless the fast
    path is on, then the same computation through :meth:`_attend`."""

    def forward(self, x, media, media_locations=None, use_cached_media=False):
        if not self.fast_path:
            return super().forward(x, media, media_locations=media_locations, use_cached_media=use_cached_media)
        if media_locations is None:
            text_time = None
        elif use_cached_media:  # every position after the last cached image
            text_time = torch.count_nonzero(media_locations, dim=1)[:, None].expand(-1, x.shape[1])
        else:
            if media_locations.shape[1] != x.shape[1]:
                raise ValueError(
                    f"media_locations.shape is {tuple(media_locations.shape)} but x.shape is {tuple(x.shape)}"
                )
            text_time = media_locations.cumsum(dim=-1)
        return self._attend(x, media, text_time)


class V1MaskedCrossAttention(_MediaAttention):
    """Masked cross-attention with OpenFlamingo v1 text-time semantics (``attend_previous=False``)."""

    def forward(self, x, media, media_locations=None, use_cached_media=False):
        if media_locations is None:
            raise ValueError("v1 cross-attention needs media_locations")
        loc = media_locations.bool()
        n_media = loc.sum(dim=-1, keepdim=True)
        text_time = loc.long().cumsum(dim=-1) + (~loc).long()
        text_time = text_time.masked_fill(text_time > n_media, 0)
        return self._attend(x, media, text_time)


class MMGatedCrossAttentionBlock(GatedCrossAttentionBlock):
    """Upstream gated block; for v1 its attention uses :class:`V1MaskedCrossAttention`.

    Parameters are created in upstream's order, so seeded initialisation is identical.
    """

    def __init__(
        self, *, dim, dim_visual, version: str = "v2", dim_head=64, heads=8, ff_mult=4, only_attend_immediate_media=True
    ):
        nn.Module.__init__(self)
        attn_cls = V1MaskedCrossAttention if version == "v1" else V2MaskedCrossAttention
        self.attn = attn_cls(
            dim=dim,
            dim_visual=dim_visual,
            dim_head=dim_head,
            heads=heads,
            only_attend_immediate_media=only_attend_immediate_media,
        )
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

    def init_flamingo(
        self, media_token_id, lang_hidden_size, vis_hidden_size, cross_attn_every_n_layers, gradient_checkpointing
    ):
        self.old_decoder_blocks = self._get_decoder_layers()
        self.gated_cross_attn_layers = nn.ModuleList(
            [
                MMGatedCrossAttentionBlock(
                    dim=lang_hidden_size, dim_visual=vis_hidden_size, version=self.flamingo_version
                )
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

    _beams_of_next_prompt = 0  # set by prompt_once_per_beam for the first forward of one generate call
    _beam_prompt_ran = False

    @contextlib.contextmanager
    def prompt_once_per_beam(self, beams: int):
        """Within this context, the first forward over an empty KV cache whose rows are ``beams`` copies of
        each prompt (HF beam search's first step) runs each prompt once and repeats its logits and cache
        to the copies. Yields a function telling whether that happened. ``beams`` < 2: off."""
        self._beams_of_next_prompt, self._beam_prompt_ran = (beams if beams > 1 else 0), False
        try:
            yield lambda: self._beam_prompt_ran
        finally:
            self._beams_of_next_prompt = 0

    def _prompt_once(self, beams, input_ids, attention_mask, position_ids, logits_to_keep, kwargs):
        """The forward of rows that are ``beams`` consecutive copies of each prompt, computed on one copy."""
        one = slice(None, None, beams)
        layers = self._get_decoder_layers()
        vis = [layer.vis_x for layer in layers]
        for layer, v in zip(layers, vis):
            if v is not None:
                layer.condition_vis_x(v[one])
        try:
            out = self.forward(
                input_ids[one],
                None if attention_mask is None else attention_mask[one],
                None if position_ids is None else position_ids[one],
                logits_to_keep,
                **kwargs,
            )
        finally:
            for layer, v in zip(layers, vis):
                layer.condition_vis_x(v)
                if layer.media_locations is not None and layer.media_locations.shape[0] * beams == input_ids.shape[0]:
                    # the prompt's media locations, per copy: cached-media decoding steps read them
                    layer.condition_media_locations(layer.media_locations.repeat_interleave(beams, dim=0))
        cache = output_cache(out)
        if cache is not None:
            cache.batch_repeat_interleave(beams)
        out.logits = out.logits.repeat_interleave(beams, dim=0)
        self._beam_prompt_ran = True
        return out

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, logits_to_keep=0, **kwargs):
        if not self.initialized_flamingo:
            raise ValueError("Flamingo layers are not initialized. Please call `init_flamingo` first.")
        beams = self._beams_of_next_prompt
        if beams and input_ids is not None and input_ids.shape[0] % beams == 0:
            cache = kwargs.get(lm_cache_kwarg(self))
            if cache is None or cache.get_seq_length() == 0:
                self._beams_of_next_prompt = 0  # one prompt forward per generate call
                return self._prompt_once(beams, input_ids, attention_mask, position_ids, logits_to_keep, kwargs)
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

    def __init__(
        self,
        vision_encoder,
        lang_encoder,
        eoc_token_id: int,
        media_token_id: int,
        vis_dim: int,
        cross_attn_every_n_layers: int = 1,
        flamingo_version: str = "v2",
        perceiver_depth: int = 6,
        perceiver_num_latents: int = 64,
        gradient_checkpointing: bool = False,
    ):
        if flamingo_version not in FLAMINGO_VERSIONS:
            raise ValueError(f"flamingo_version must be one of {FLAMINGO_VERSIONS}, got {flamingo_version!r}")
        if not isinstance(lang_encoder, MMFlamingoLMMixin):
            raise TypeError("lang_encoder must be extended with MMFlamingoLMMixin")
        lang_encoder.flamingo_version = flamingo_version
        super().__init__(
            vision_encoder,
            lang_encoder,
            eoc_token_id,
            media_token_id,
            vis_dim,
            cross_attn_every_n_layers=cross_attn_every_n_layers,
            gradient_checkpointing=gradient_checkpointing,
        )
        if (perceiver_depth, perceiver_num_latents) != (6, 64):
            self.perceiver = PerceiverResampler(dim=vis_dim, depth=perceiver_depth, num_latents=perceiver_num_latents)
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
    def media_attention_fast_path(self) -> Iterator[None]:
        """Image keys/values computed once per conditioned media tensor, and attention skipped where no
        position may attend an image (exact; see the module docstring). Memos are dropped on exit."""
        attns = [b.attn for b in self.lang_encoder.gated_cross_attn_layers if b is not None]
        for a in attns:
            a.fast_path, a._kv_memo = True, None
        try:
            yield
        finally:
            for a in attns:
                a.fast_path, a._kv_memo = False, None

    @contextlib.contextmanager
    def text_only(self) -> Iterator[None]:
        self.lang_encoder.set_text_only(True)
        try:
            yield
        finally:
            self.lang_encoder.set_text_only(False)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        vision_x,
        lang_x,
        attention_mask=None,
        labels=None,
        clear_conditioned_layers=True,
        past_key_values=None,
        use_cache=False,
        vision_features=None,
        position_ids=None,
        logits_to_keep=0,
    ):
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
                return lm(input_ids=lang_x, attention_mask=attention_mask, labels=labels, use_cache=use_cache, **extra)
        if lm._use_cached_vision_x:
            if vision_x is not None or vision_features is not None:
                raise ValueError(
                    "Expect vision_x to be None when media has been cached using cache_media(). "
                    "Try uncache_media() first."
                )
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
