"""The media attention fast path (MMFlamingo.media_attention_fast_path, entered by the Generator): image
keys/values computed once per conditioned media tensor and attention skipped where no position may
attend an image -- bitwise the same as upstream open-flamingo's forward (v2) and as the plain v1 path."""

from __future__ import annotations

import pytest
import torch
from open_flamingo.src.helpers import MaskedCrossAttention

from helpers import tiny_with_random_lora
from mmgpt_eval.model.flamingo import V1MaskedCrossAttention, V2MaskedCrossAttention
from mmgpt_eval.model.generate import GenerationSettings, Generator
from test_generate import _few_shot_prompts, _open_gates, _prompts


def _inputs(seed=0, b=3, t_txt=11, t_img=3, n=4, dim=16, dim_visual=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t_txt, dim, generator=g)
    media = torch.randn(b, t_img, n, dim_visual, generator=g)
    loc = torch.zeros(b, t_txt, dtype=torch.bool)
    loc[0, [0, 4, 8]] = True  # three images
    loc[1, [2, 3]] = True  # two, back to back
    loc[2, 6] = True  # one, after six text positions
    return x, media, loc


def _pair(cls, immediate=True):
    torch.manual_seed(1)
    ours = cls(dim=16, dim_visual=8, dim_head=4, heads=2, only_attend_immediate_media=immediate)
    ref = MaskedCrossAttention(dim=16, dim_visual=8, dim_head=4, heads=2, only_attend_immediate_media=immediate)
    ref.load_state_dict(ours.state_dict())
    return ours.eval(), ref.eval()


class _FastPath:
    """The fast path of one attention module, as media_attention_fast_path switches it."""

    def __init__(self, attn):
        self.attn = attn

    def __enter__(self):
        self.attn.fast_path, self.attn._kv_memo = True, None

    def __exit__(self, *exc):
        self.attn.fast_path, self.attn._kv_memo = False, None


@pytest.mark.parametrize("immediate", [True, False])
def test_v2_fast_path_is_upstreams_forward_bitwise(immediate):
    ours, ref = _pair(V2MaskedCrossAttention, immediate)
    x, media, loc = _inputs()
    with torch.no_grad():
        cases = [
            dict(media_locations=loc),
            dict(media_locations=loc, use_cached_media=True),
            dict(use_cached_media=True),
        ]  # no locations: every image attended, no masking
        expected = [ref(x, media, **kw) for kw in cases]
        plain = [ours(x, media, **kw) for kw in cases]
        with _FastPath(ours):
            fast = [ours(x, media, **kw) for kw in cases]
    for e, p, f in zip(expected, plain, fast):
        assert torch.equal(e, p) and torch.equal(e, f)
    with _FastPath(ours), pytest.raises(ValueError, match="media_locations.shape"):
        ours(x, media, media_locations=loc[:, :5])


def test_v1_fast_path_equals_plain_path_and_skips_imageless_calls():
    ours, _ = _pair(V1MaskedCrossAttention)
    x, media, loc = _inputs()
    after = torch.zeros(3, 2, dtype=torch.bool)  # a decoding step: no <image> in the call -> no image attended
    with torch.no_grad():
        plain = ours(x, media, media_locations=loc), ours(x[:, :2], media, media_locations=after)
        calls = []
        h = ours.to_q.register_forward_hook(lambda *a: calls.append(1))
        with _FastPath(ours):
            fast = ours(x, media, media_locations=loc), ours(x[:, :2], media, media_locations=after)
        h.remove()
    assert torch.equal(plain[0], fast[0]) and torch.equal(plain[1], fast[1])
    assert not plain[1].any()  # exactly zero, as the masked attention gives
    assert len(calls) == 1  # the image-less call computed no attention


def test_image_keys_and_values_computed_once_per_media_tensor():
    ours, _ = _pair(V2MaskedCrossAttention)
    x, media, loc = _inputs()
    rows = []
    h = ours.to_kv.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        with torch.no_grad():
            with _FastPath(ours):
                for _ in range(3):  # a prefill and two decoding steps against the same conditioned features
                    ours(x[:, -1:], media, media_locations=loc, use_cached_media=True)
                ours(x, media.clone(), media_locations=loc)  # other features: computed again
            assert ours._kv_memo is None and not ours.fast_path  # memo dropped on exit
            ours(x, media, media_locations=loc)
            ours(x, media, media_locations=loc)  # fast path off: upstream recomputes every call
    finally:
        h.remove()
    assert rows == [3, 3, 3, 3]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_generator_with_fast_path_gives_the_tokens_of_the_plain_model(version, monkeypatch):
    """End to end: greedy and beam-3 tokens of few-shot and one-image prompts, fast path on (the Generator)
    vs off (the model as upstream computes it)."""
    import contextlib

    m = _open_gates(tiny_with_random_lora(flamingo_version=version), 2.0)
    runs = []
    for prompts in (_few_shot_prompts(), _prompts(6)):
        for s in (GenerationSettings(max_new_tokens=6), GenerationSettings(max_new_tokens=6, num_beams=3)):
            fast = Generator(m, share_prefix=False).generate_grouped(prompts, s, batch_size=8)
            with monkeypatch.context() as mp:
                mp.setattr(type(m.model), "media_attention_fast_path", lambda self: contextlib.nullcontext())
                plain = Generator(m, share_prefix=False).generate_grouped(prompts, s, batch_size=8)
            runs.append(([g.token_ids for g in fast], [g.token_ids for g in plain]))
    for fast, plain in runs:
        assert fast == plain
    assert not any(b.attn.fast_path for b in m.model.lang_encoder.gated_cross_attn_layers if b is not None)
