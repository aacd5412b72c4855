"""Model specs: presets, TOML files, relative paths, validation, hub presets offline."""

from __future__ import annotations

import pytest

from conftest import V1
from mmgpt_eval.errors import UserError
from mmgpt_eval.model.build import load_model
from mmgpt_eval.model.spec import list_presets, load_spec


def test_presets_listed():
    p = list_presets()
    assert {"tiny", "mmgpt-9b-v0", "openflamingo-9b-mpt7b"} <= set(p)
    s = load_spec("mmgpt-9b-v0")
    assert (s.cross_attn_every_n_layers, s.flamingo_version, s.vision_quick_gelu, s.vision_tokens_ln_post) == (
        4,
        "v1",
        True,
        False,
    )
    assert (s.vision_encoder, s.vision_pretrained) == ("ViT-L-14", "openai")
    assert load_spec("openflamingo-9b-mpt7b").flamingo_version == "v2"


def test_toml_relative_paths_and_preset_inheritance(tmp_path):
    (tmp_path / "weights").mkdir()
    f = tmp_path / "spec.toml"
    f.write_text('preset = "tiny"\nopenflamingo_checkpoint = "weights/of.pt"\nseed = 3\n')
    (tmp_path / "weights" / "of.pt").write_bytes(b"")
    s = load_spec(f)
    assert s.openflamingo_checkpoint == str((tmp_path / "weights" / "of.pt").resolve())
    assert s.seed == 3 and s.init == "random" and s.lm.endswith("tiny/lm")


def test_spec_errors(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('preset = "tiny"\nflamingo_versoin = "v1"\n')
    with pytest.raises(UserError, match="bad.toml: unknown model spec key.*flamingo_versoin"):
        load_spec(f)
    f.write_text('preset = "tiny"\nflamingo_version = "v3"\n')
    with pytest.raises(UserError, match="flamingo_version must be"):
        load_spec(f)
    f.write_text('preset = "tiny"\nprecision = \n')
    with pytest.raises(UserError, match="malformed TOML"):
        load_spec(f)
    with pytest.raises(UserError, match="unknown model preset 'nope'; known presets"):
        load_spec("nope")
    with pytest.raises(UserError, match="model spec file not found"):
        load_spec(tmp_path / "missing.toml")


def test_tiny_is_deterministic():
    a = load_model(load_spec("tiny", {"device": "cpu"}))
    b = load_model(load_spec("tiny", {"device": "cpu"}))
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert p.equal(q), n


def test_hub_preset_offline_names_what_is_missing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"preset mmgpt-9b-v0: tokenizer = 'huggyllama/llama-7b' is not a local path"):
        load_model(load_spec("mmgpt-9b-v0"))


def test_hub_preset_with_local_paths(tmp_path, monkeypatch):
    """A preset whose hub entries are pointed at local files loads offline (here: the v1 fixture's
    tokenizer and LM; the ViT-L/14 tower is still a hub name, so that is what the error names)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    f = tmp_path / "local.toml"
    f.write_text(
        f'preset = "mmgpt-9b-v0"\nlm = "{V1}/lm"\ntokenizer = "{V1}/tokenizer"\n'
        f'openflamingo_checkpoint = "{V1}/openflamingo_v1_checkpoint.pt"\n'
    )
    with pytest.raises(UserError, match=r"vision_pretrained = 'openai' is not a local path"):
        load_model(load_spec(f))
    f.write_text(
        f'preset = "mmgpt-9b-v0"\nlm = "{V1}/lm"\ntokenizer = "{V1}/tokenizer"\n'
        f'vision_encoder = "{V1}/vision"\nvision_pretrained = "{V1}/vision/visual.safetensors"\n'
        f'openflamingo_checkpoint = "{V1}/openflamingo_v1_checkpoint.pt"\n'
        'cross_attn_every_n_layers = 2\nprecision = "fp32"\n'
    )
    m = load_model(load_spec(f))
    assert m.reports[0].ok and m.model.flamingo_version == "v1"
