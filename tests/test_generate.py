"""Generation semantics: cache vs no cache, batch-size invariance, v1/v2 masks, cleanup, <image> suppression."""

from __future__ import annotations

import pytest
import torch

from helpers import logits, probe_inputs, tiny, tiny_with_random_lora
from mmgpt_eval.model.generate import GenerationSettings, Generator, PromptInput
from mmgpt_eval.templates import TEMPLATES


@pytest.fixture(scope="module", params=["v1", "v2"])
def lora_model(request):
    return tiny_with_random_lora(flamingo_version=request.param)


def _prompts(n=12):
    g = torch.Generator().manual_seed(1)
    qs = [
        "what color is the shape?",
        "is there a circle in the image?",
        "how many shapes are there?",
        "Describe the image in detail.",
        "what is the blue shape?",
        "does the image not contain a triangle?",
    ]
    from PIL import Image

    out = []
    for i in range(n):
        arr = (torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
        img = Image.fromarray(arr)
        out.append(
            PromptInput(TEMPLATES["mmgpt"].render(question=qs[i % len(qs)] + " " * (i % 3)), [img], [f"img{i % 7}"])
        )
    # a few rows share an image (same key -> one feature computation)
    return out


@pytest.mark.parametrize("beams", [1, 2])
def test_cache_equals_no_cache(lora_model, beams):
    enc, px = probe_inputs(lora_model)
    kw = dict(max_new_tokens=10, num_beams=beams, eos_token_id=2, pad_token_id=lora_model.tokenizer.pad_token_id)
    with torch.no_grad():
        a = lora_model.model.generate(px, enc.input_ids, attention_mask=enc.attention_mask, use_cache=True, **kw)
        b = lora_model.model.generate(px, enc.input_ids, attention_mask=enc.attention_mask, use_cache=False, **kw)
    assert torch.equal(a, b)


def test_cached_generation_sees_the_image_v2():
    """v2: every generated token attends to the image, also with the KV cache (the MMGPT-style
    lang_encoder-only PEFT wrapper broke this). Changing only the image changes later tokens' logits."""
    m = tiny_with_random_lora(flamingo_version="v2")
    enc, px = probe_inputs(m, 1)
    lm = m.model.lang_encoder
    seen = []
    block = next(b for b in lm.gated_cross_attn_layers if b is not None)
    h = block.attn.register_forward_hook(lambda mod, inp, out: seen.append(out.detach().abs().sum().item()))
    try:
        with torch.no_grad():
            m.model.generate(
                px,
                enc.input_ids,
                attention_mask=enc.attention_mask,
                max_new_tokens=4,
                use_cache=True,
                min_new_tokens=4,
                eos_token_id=2,
            )
    finally:
        h.remove()
    assert len(seen) == 4 and all(v > 0 for v in seen[1:])  # decoding steps (1 token each) attend


def test_v1_generated_tokens_do_not_cross_attend():
    m = tiny_with_random_lora(flamingo_version="v1")
    enc, px = probe_inputs(m, 1)
    block = next(b for b in m.model.lang_encoder.gated_cross_attn_layers if b is not None)
    seen = []
    h = block.attn.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            m.model.generate(
                px, enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=3, min_new_tokens=3, eos_token_id=2
            )
    finally:
        h.remove()
    first = seen[0][0]
    img_pos = (enc.input_ids[0] == m.media_token_id).nonzero().item()
    assert first[: img_pos + 1].abs().sum(-1).gt(0).all()  # up to and including <image>
    assert first[img_pos + 1 :].abs().sum().item() == 0.0  # instruction/response: exactly zero
    assert all(s.abs().sum().item() == 0.0 for s in seen[1:])  # generated tokens: zero


def test_batch_size_invariance(lora_model):
    gen = Generator(lora_model)
    prompts = _prompts()
    s = GenerationSettings(max_new_tokens=8)
    one = gen.generate_grouped(prompts, s, batch_size=1)
    many = gen.generate_grouped(prompts, s, batch_size=8)
    assert [g.token_ids for g in one] == [g.token_ids for g in many]
    beams = GenerationSettings(max_new_tokens=6, num_beams=3)
    assert [g.token_ids for g in gen.generate_grouped(prompts[:5], beams, batch_size=1)] == [
        g.token_ids for g in gen.generate_grouped(prompts[:5], beams, batch_size=5)
    ]


def test_shared_images_encoded_once(monkeypatch):
    m = tiny()
    gen = Generator(m)
    calls = []
    orig = m.model.encode_vision
    monkeypatch.setattr(m.model, "encode_vision", lambda px: calls.append(px.shape[0]) or orig(px))
    gen.generate(_prompts(8), GenerationSettings(max_new_tokens=2))
    assert calls == [7]  # 8 rows, 7 distinct image keys
    gen.generate(_prompts(12)[4:], GenerationSettings(max_new_tokens=2))
    assert calls == [7] and gen.feature_cache_hits == 7  # later batches: the same keys come from the cache
    assert gen.images_encoded == 7
    gen.clear_caches()
    gen.generate(_prompts(2), GenerationSettings(max_new_tokens=2))
    assert calls == [7, 2]


def test_feature_cache_bounds_and_unkeyed_images(monkeypatch):
    m = tiny()
    calls = []
    orig = m.model.encode_vision
    monkeypatch.setattr(m.model, "encode_vision", lambda px: calls.append(px.shape[0]) or orig(px))
    prompts = _prompts(7)
    one = Generator(m).vision_features(prompts[:1])[0, 0]
    gen = Generator(m, feature_cache_bytes=3 * one.numel() * one.element_size())  # room for 3 images
    calls.clear()
    s = GenerationSettings(max_new_tokens=2)
    first = gen.generate(prompts, s)
    assert len(gen._features) == 3 and list(gen._features) == ["img4", "img5", "img6"]  # least recently used out
    again = gen.generate(prompts, s)
    assert calls == [7, 4] and [g.token_ids for g in first] == [g.token_ids for g in again]
    # in-memory images without keys: deduplicated within a call, never cached across calls
    unkeyed = [PromptInput(p.text, p.images) for p in prompts[:3]]
    gen.clear_caches()
    calls.clear()
    gen.generate(unkeyed, s)
    gen.generate(unkeyed, s)
    assert calls == [3, 3] and len(gen._features) == 0


def test_image_changes_output(tiny_model):
    enc, px = probe_inputs(tiny_model, 2)
    a = logits(tiny_model, enc, px)
    b = logits(tiny_model, enc, px.flip(0))
    assert (a - b).abs().max() > 1e-4


def test_text_only_path_skips_gated_blocks():
    m = tiny()
    enc = m.tokenizer([TEMPLATES["mmgpt-text"].render(question="List four fruits.")], return_tensors="pt")
    with torch.no_grad():
        a = m.model(vision_x=None, lang_x=enc.input_ids, attention_mask=enc.attention_mask).logits
        for b in m.model.lang_encoder.gated_cross_attn_layers:
            b.ff_gate.fill_(3.0)
            b.attn_gate.fill_(3.0)
        b2 = m.model(vision_x=None, lang_x=enc.input_ids, attention_mask=enc.attention_mask).logits
    assert torch.equal(a, b2)


def test_generate_cleans_up_after_an_error(tiny_model):
    m = tiny_model.model
    enc, px = probe_inputs(tiny_model, 1)
    with pytest.raises(ValueError):
        m.generate(
            px, enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=2, num_beams=2, num_return_sequences=3
        )  # invalid: more sequences than beams
    assert m.lang_encoder._use_cached_vision_x is False
    assert not any(layer.vis_x is not None for layer in m.lang_encoder._get_decoder_layers())
    out = logits(tiny_model, enc, px)  # a normal forward still works
    assert torch.isfinite(out).all()


def test_image_token_is_never_generated():
    m = tiny()
    head = m.model.lang_encoder.get_output_embeddings()

    def boost(mod, inp, out):
        out[..., m.media_token_id] += 100.0
        return out

    head.register_forward_hook(boost)
    enc, px = probe_inputs(m, 2)
    out = m.model.generate(px, enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=5)
    assert m.media_token_id not in out[:, enc.input_ids.shape[1] :].flatten().tolist()
    # sanity: without suppression it would be the argmax
    with torch.no_grad():
        last = m.model(vision_x=px, lang_x=enc.input_ids, attention_mask=enc.attention_mask).logits[:, -1]
    assert (last.argmax(-1) == m.media_token_id).all()


def test_v2_default_stop_is_endofchunk(tiny_model):
    assert tiny_model.model.default_eos_token_id() == tiny_model.eoc_token_id


def _open_gates(m, value=1.0):
    with torch.no_grad():
        for b in m.model.lang_encoder.gated_cross_attn_layers:
            if b is not None:
                b.attn_gate.fill_(value)
                b.ff_gate.fill_(value)
    return m


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_shared_prefix_gives_identical_outputs(version):
    """The batch's shared prompt prefix computed once gives the same tokens and texts as every row
    computing it (greedy and sampled, image and text-only rows); v1 image rows never share."""
    m = _open_gates(tiny_with_random_lora(flamingo_version=version))
    texts = [
        PromptInput(TEMPLATES["mmgpt-text"].render(question=q))
        for q in ["List four fruits.", "Write a story about a cat  ", "Why is the sky blue?", "Name a colour."]
    ]
    for prompts in (_prompts(), texts):
        for s in (
            GenerationSettings(max_new_tokens=12),
            GenerationSettings(max_new_tokens=12, do_sample=True, top_p=0.9, seed=5),
        ):
            shared, plain = Generator(m), Generator(m, share_prefix=False)
            a = shared.generate_grouped(prompts, s, batch_size=8)
            b = plain.generate_grouped(prompts, s, batch_size=8)
            assert [g.token_ids for g in a] == [g.token_ids for g in b]
            assert [(g.full_text, g.prompt_tokens, g.stopped_on_eos) for g in a] == [
                (g.full_text, g.prompt_tokens, g.stopped_on_eos) for g in b
            ]
            assert plain.shared_prefix_tokens == 0
            images = bool(prompts[0].images)
            assert (shared.shared_prefix_tokens > 0) == (version == "v2" or not images)


def test_shared_prefix_rules():
    v2 = Generator(tiny(flamingo_version="v2"))
    media = v2.lm.media_token_id
    greedy = GenerationSettings()
    rows = [[1, 5, 6, 7, 8, 9, media, 10, 11], [1, 5, 6, 7, 8, 9, media, 12]]
    assert v2.shared_prefix_length(rows, True, greedy) == 6  # stops before <image>
    assert v2.shared_prefix_length(rows, False, greedy) == 7  # text rows: the common tokens, one left per row
    assert v2.shared_prefix_length(rows[:1], True, greedy) == 0  # one row: nothing to share
    assert v2.shared_prefix_length([[1, 5, 6], [1, 5, 7]], False, greedy) == 0  # below MIN_SHARED_PREFIX
    assert v2.shared_prefix_length(rows, True, GenerationSettings(num_beams=2)) == 0
    assert v2.shared_prefix_length(rows, True, GenerationSettings(use_cache=False)) == 0
    blocks = [b for b in v2.model.lang_encoder.gated_cross_attn_layers if b is not None]
    for b in blocks:  # attending every earlier image: text before <image> attends uniformly, so no sharing
        b.attn.only_attend_immediate_media = False
    assert v2.shared_prefix_length(rows, True, greedy) == 0 and v2.shared_prefix_length(rows, False, greedy) == 7
    for b in blocks:
        b.attn.only_attend_immediate_media = True
    v1 = Generator(tiny(flamingo_version="v1"))
    assert v1.shared_prefix_length(rows, True, greedy) == 0  # v1: positions before <image> attend the image
    assert v1.shared_prefix_length(rows, False, greedy) == 7


def test_v1_prefix_attends_the_image():
    """Why v1 image rows never share a prefix: their positions before <image> depend on the image."""
    m = _open_gates(tiny_with_random_lora(flamingo_version="v1"))
    enc, px = probe_inputs(m, 2)
    a = logits(m, enc, px)
    b = logits(m, enc, px.flip(0))
    img = (enc.input_ids[0] == m.media_token_id).nonzero().item()
    assert (a[0, :img] - b[0, :img]).abs().max() > 1e-4
    v2 = _open_gates(tiny_with_random_lora(flamingo_version="v2"))
    enc, px = probe_inputs(v2, 2)
    a, b = logits(v2, enc, px), logits(v2, enc, px.flip(0))
    img = (enc.input_ids[0] == v2.media_token_id).nonzero().item()
    assert torch.equal(a[0, :img], b[0, :img])  # v2: exactly image-independent before <image>


def test_beam_search_encodes_each_distinct_image_once(tiny_model):
    """OpenFlamingo's generate repeats vision_x for every beam before encoding (num_beams encodings
    per image); the Generator encodes each distinct image once and repeats the features."""
    rows = []
    hook = tiny_model.model.vision_encoder.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        gen = Generator(tiny_model)
        prompts = _prompts(6)  # 6 rows over keys img0..img5
        keys = {k for p in prompts for k in p.keys()}
        gen.generate(prompts, GenerationSettings(max_new_tokens=3, num_beams=3))
    finally:
        hook.remove()
    assert sum(rows) == len(keys) == gen.images_encoded


def _few_shot_prompts(n=6, shots=2):
    """OpenFlamingo-style prompts: ``shots`` demos with their own images, then the query image."""
    from PIL import Image

    g = torch.Generator().manual_seed(3)
    imgs = [Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()) for _ in range(5)]
    qs = ["what color is the shape?", "is there a circle?", "how many shapes are there?", "what shape is it?"]
    out = []
    for i in range(n):
        demo = "".join(
            f"<image>Question:{qs[(i + d) % 4]} Short answer:{['red', 'yes', '2'][d % 3]}<|endofchunk|>"
            for d in range(shots)
        )
        text = demo + f"<image>Question:{qs[i % 4]}" + " more" * (i % 3) + " Short answer:"
        keys = [f"d{(i + d) % 5}" for d in range(shots)] + [f"q{i % 5}"]
        out.append(PromptInput(text, [imgs[(i + d) % 5] for d in range(shots)] + [imgs[i % 5]], keys))
    return out


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_beam_search_prompt_computed_once_per_row(version):
    """Beam search: the first forward runs each prompt once (not once per beam) and repeats its logits and
    cache to the beams; the tokens equal those of every beam computing the prompt, for one-image, few-shot
    (several images: decoding must attend the query image, not another) and text-only prompts,
    left-padded in one batch."""
    m = _open_gates(tiny_with_random_lora(flamingo_version=version), 2.0)
    texts = [
        PromptInput(TEMPLATES["mmgpt-text"].render(question=q))
        for q in ["List four fruits.", "Write a story about a cat  ", "Why is the sky blue?"]
    ]
    rows_seen = []
    lm = m.model.lang_encoder
    h = next(iter(lm._get_decoder_layers())).register_forward_pre_hook(
        lambda mod, a, kw: rows_seen.append(tuple((a[0] if a else kw["lang_x"]).shape[:2])), with_kwargs=True
    )
    try:
        for prompts in (_prompts(8), _few_shot_prompts(), texts):
            for s in (
                GenerationSettings(max_new_tokens=6, num_beams=3),
                GenerationSettings(max_new_tokens=6, num_beams=2, length_penalty=0.0),
            ):
                shared, plain = Generator(m), Generator(m, share_prefix=False)
                rows_seen.clear()
                a = shared.generate_grouped(prompts, s, batch_size=8)
                first = rows_seen[:2]
                rows_seen.clear()
                b = plain.generate_grouped(prompts, s, batch_size=8)
                assert [g.token_ids for g in a] == [g.token_ids for g in b]
                assert [(g.full_text, g.prompt_tokens, g.stopped_on_eos) for g in a] == [
                    (g.full_text, g.prompt_tokens, g.stopped_on_eos) for g in b
                ]
                n = len(prompts)
                assert first[0][0] == n and first[0][1] > 1  # the prompts, once, at the batch's own size
                assert first[1] == (n * s.num_beams, 1)  # then one token per beam
                assert rows_seen[0][0] == n * s.num_beams  # without sharing: the prompts once per beam
                assert shared.beam_prompt_tokens > 0 and plain.beam_prompt_tokens == 0
    finally:
        h.remove()
    assert lm._beams_of_next_prompt == 0


def test_beam_prompt_rules():
    gen = Generator(tiny(flamingo_version="v2"))
    assert gen.shares_beam_prompt(GenerationSettings(num_beams=3))
    assert not gen.shares_beam_prompt(GenerationSettings())  # greedy: one row per prompt anyway
    assert not gen.shares_beam_prompt(GenerationSettings(num_beams=3, use_cache=False))
    assert not gen.shares_beam_prompt(GenerationSettings(num_beams=3, do_sample=True))
    assert not Generator(gen.lm, share_prefix=False).shares_beam_prompt(GenerationSettings(num_beams=3))
