"""Each shim in mmgpt_eval.compat, with a check that fails without it."""

from __future__ import annotations

import inspect

import pytest
import torch

from conftest import V1
from helpers import probe_inputs, tiny
from mmgpt_eval import compat


def _upstream_flamingo():
    """open-flamingo 2.0.1 exactly as shipped (upstream mixin and Flamingo), on the tiny configs."""
    from open_flamingo import Flamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance

    m = tiny()
    lm_cls = _plain_lm_class(m.model.lang_encoder)
    lm = lm_cls(m.model.lang_encoder.config)
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("model.layers")
    import open_clip

    clip, _, _ = open_clip.create_model_and_transforms(f"local-dir:{_tiny_dir()}/vision")
    clip.visual.output_tokens = True
    return Flamingo(clip, lm, m.eoc_token_id, m.media_token_id, vis_dim=64), m


def _plain_lm_class(lm):
    from transformers import LlamaForCausalLM

    assert isinstance(lm, LlamaForCausalLM)
    return LlamaForCausalLM


def _tiny_dir():
    from mmgpt_eval.presets import presets_dir as _presets_dir

    return _presets_dir() / "tiny"


def test_shim1_attention_mask_optional():
    upstream, m = _upstream_flamingo()
    enc, px = probe_inputs(m, 1)  # batch of one: generate() drops the all-ones mask
    with pytest.raises(TypeError, match="attention_mask"):
        upstream.generate(px, enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=2)
    upstream.uncache_media()
    out = m.model.generate(px, enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=2)
    assert out.shape[1] > enc.input_ids.shape[1]


def test_shim2_cache_kwarg_name(monkeypatch):
    m = tiny()
    lm = m.model.lang_encoder
    assert compat.lm_cache_kwarg(lm) == "cache"
    # the LM's forward has no past_key_values parameter any more: passing it relies on a deprecation shim
    base_forward = _plain_lm_class(lm).forward
    assert "past_key_values" not in inspect.signature(base_forward).parameters
    seen = {}
    orig = type(lm).forward

    def spy(self, *a, **kw):
        seen.update(kw)
        return orig(self, *a, **kw)

    monkeypatch.setattr(type(lm), "forward", spy)
    enc, px = probe_inputs(m, 1)
    with torch.no_grad():
        out = m.model(px, enc.input_ids, attention_mask=enc.attention_mask, use_cache=True)
        m.model(px, enc.input_ids[:, -1:], past_key_values=out.cache, use_cache=True)
    assert "cache" in seen and "past_key_values" not in seen


def test_shim3_llama_tokenizer_keeps_bos():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(V1 / "tokenizer"))
    tok.add_eos_token = False  # what MultiModal-GPT's app.py does
    assert tok("hi").input_ids[0] != 1  # transformers 5: BOS silently gone
    tok = compat.configure_llama_tokenizer(AutoTokenizer.from_pretrained(str(V1 / "tokenizer")))
    ids = tok("hi").input_ids
    assert ids[0] == 1 and ids[-1] != 2


def test_shim4_mmgpt_task_type():
    from peft import LoraConfig

    with pytest.raises(ValueError, match="task type"):
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type="VL")
    cfg = compat.lora_config(r=4, lora_alpha=8, target_modules=["q_proj"], task_type="VL", not_a_field=1)
    assert cfg.task_type is None and cfg.r == 4


def test_shim5_open_clip_tokens_without_ln_post():
    import open_clip

    clip, _, _ = open_clip.create_model_and_transforms(f"local-dir:{V1}/vision")
    visual = clip.visual
    visual.final_ln_after_pool = False  # open_clip >= 2.23 default for configs without the flag
    visual.output_tokens = True
    torch.manual_seed(0)
    with torch.no_grad():
        visual.ln_post.weight.normal_()
        visual.ln_post.bias.normal_()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        raw = visual.transformer(visual._embeds(x))[:, 1:]  # patch tokens before ln_post (2023 semantics)
        new_tokens = visual(x)[1]
        compat.configure_open_clip_visual(visual, tokens_ln_post=False)
        old_tokens = visual(x)[1]
    assert not torch.allclose(new_tokens, raw)
    torch.testing.assert_close(old_tokens, raw)


def test_cache_select_copies_rows_and_leaves_the_shared_cache_alone(tiny_model):
    """Shim 7: ranking runs candidate rows against one context's cache. A forward extends a
    transformers-5 cache in place, so the shared cache must be copied, row by row, not passed on."""
    import torch

    from mmgpt_eval.compat import cache_select, output_cache

    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    with torch.no_grad():
        cache = output_cache(tiny_model.model(None, ids, attention_mask=torch.ones_like(ids), use_cache=True))
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    sel = cache_select(cache, torch.tensor([1, 1, 0]))
    for (k, v), layer in zip(before, sel.layers):
        assert torch.equal(layer.keys, k[[1, 1, 0]]) and torch.equal(layer.values, v[[1, 1, 0]])
    nxt = torch.tensor([[11], [12], [13]])
    with torch.no_grad():
        tiny_model.model(
            None, nxt, attention_mask=torch.ones((3, 5), dtype=torch.long), past_key_values=sel, use_cache=True
        )
    assert sel.layers[0].keys.shape[-2] == 5  # the selected copy grew ...
    assert all(torch.equal(layer.keys, k) for (k, _), layer in zip(before, cache.layers))  # ... the shared one did not
    # and passing the shared cache itself would have changed it (why the shim exists)
    with torch.no_grad():
        tiny_model.model(
            None, nxt[:2], attention_mask=torch.ones((2, 5), dtype=torch.long), past_key_values=cache, use_cache=True
        )
    assert cache.layers[0].keys.shape[-2] == 5
