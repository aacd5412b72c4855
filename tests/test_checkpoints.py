"""Every checkpoint format loads onto the base model exactly; bad checkpoints fail loudly."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch
from safetensors.torch import save_file

from helpers import SETTINGS, logits, probe_inputs, tiny, tiny_with_random_lora
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.model.build import load_model
from mmgpt_eval.model.checkpoint import canonical_key, describe, read_checkpoint
from mmgpt_eval.model.export import save_mmgpt_checkpoint, save_peft_adapter
from mmgpt_eval.model.lora import lora_modules, lora_state_dict
from mmgpt_eval.model.spec import load_spec


@pytest.fixture(scope="module")
def trained():
    """A tiny model with random LoRA adapters (MMGPT targets) and its reference logits."""
    m = tiny_with_random_lora()
    enc, px = probe_inputs(m)
    return m, enc, px, logits(m, enc, px)


def _load(path, **kw):
    return load_model(load_spec("tiny", {"device": "cpu"}), path, **kw)


def _same(trained, loaded):
    m, enc, px, ref = trained
    torch.testing.assert_close(logits(loaded, enc, px), ref, atol=0, rtol=0)


def test_adapter_placement(trained):
    m = trained[0]
    mods = lora_modules(m.model)
    # tiny: 2 LLaMA layers x q/k/v/o + 2 gated blocks x to_q/to_kv/to_out/ff.1/ff.3; never the Perceiver
    assert len(mods) == 2 * 4 + 2 * 5
    assert not any(n.startswith("perceiver") for n in mods)
    assert sum("gated_cross_attn_layer" in n for n in mods) == 10
    assert abs(lora_state_dict(m.model)[next(iter(lora_state_dict(m.model)))].abs().sum().item()) > 0


def test_mmgpt_trainer_checkpoint(trained, tmp_path):
    p = save_mmgpt_checkpoint(trained[0].model, SETTINGS, tmp_path / "checkpoint_0.pt", kind="trainer")
    sd = torch.load(p, weights_only=True)["model_state_dict"]
    assert all(k.startswith("module.lang_encoder.base_model.model.") and ".default.weight" in k for k in sd)
    loaded = _load(p)
    assert loaded.checkpoint.format == "mmgpt-trainer"
    assert loaded.reports[-1].ok and not loaded.reports[-1].missing
    _same(trained, loaded)


def test_mmgpt_final_weights(trained, tmp_path):
    p = save_mmgpt_checkpoint(trained[0].model, SETTINGS, tmp_path / "final_weights.pt", kind="final")
    assert not any(k.startswith("module.") for k in torch.load(p, weights_only=True)["model_state_dict"])
    loaded = _load(p)
    assert loaded.checkpoint.format == "mmgpt-weights"
    _same(trained, loaded)


def test_release_layout_and_raw_state_dict(trained, tmp_path):
    p = save_mmgpt_checkpoint(trained[0].model, SETTINGS, tmp_path / "ck.pt", kind="trainer")
    obj = torch.load(p, weights_only=True)
    release = {"model_state_dict": obj["model_state_dict"], "tuning_config": obj["tuning_config"]}
    torch.save(release, tmp_path / "mmgpt-lora-v0-release.pt")
    _same(trained, _load(tmp_path / "mmgpt-lora-v0-release.pt"))
    # raw state dict: no tuning_config -> alpha unknown for r=4 -> clear error, or --lora-alpha
    torch.save(obj["model_state_dict"], tmp_path / "raw.pt")
    with pytest.raises(UserError, match="no LoRA alpha"):
        _load(tmp_path / "raw.pt")
    _same(trained, _load(tmp_path / "raw.pt", lora_alpha=8.0))


def test_raw_state_dict_rank16_assumes_mmgpt_release_config(tmp_path):
    s16 = type(SETTINGS)(r=16, alpha=16.0, target_modules=SETTINGS.target_modules)
    m = tiny_with_random_lora(settings=s16)
    torch.save(
        {
            "module." + k: v
            for k, v in torch.load(save_mmgpt_checkpoint(m.model, s16, tmp_path / "c.pt"), weights_only=True)[
                "model_state_dict"
            ].items()
        },
        tmp_path / "raw16.pt",
    )
    info = read_checkpoint(tmp_path / "raw16.pt")
    assert info.lora.alpha == 16 and "assumed" in info.lora.source
    enc, px = probe_inputs(m)
    torch.testing.assert_close(logits(_load(tmp_path / "raw16.pt"), enc, px), logits(m, enc, px), atol=0, rtol=0)


def test_peft_folder_ours(trained, tmp_path):
    d = save_peft_adapter(trained[0].model, SETTINGS, tmp_path / "adapter", model_spec={"x": 1})
    cfg = json.loads((d / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8
    loaded = _load(d)
    assert loaded.checkpoint.format == "peft"
    assert loaded.checkpoint.metadata["model_spec"] == {"x": 1}
    _same(trained, loaded)


def test_peft_folder_lang_encoder_only_naming(trained, tmp_path):
    """An adapter saved MultiModal-GPT style (get_peft_model(lang_encoder) + save_pretrained):
    keys base_model.model.model.layers..., no adapter name, targets as a name list."""
    sd = lora_state_dict(trained[0].model)
    tensors = {"base_model.model." + k[len("lang_encoder.") :]: v.contiguous() for k, v in sd.items()}
    d = tmp_path / "mmgpt_peft"
    d.mkdir()
    save_file(tensors, str(d / "adapter_model.safetensors"))
    (d / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "VL",
                "r": 4,
                "lora_alpha": 8,
                "lora_dropout": 0.0,
                "target_modules": SETTINGS.target_modules,
                "bias": "none",
                "base_model_name_or_path": "llama-7b",
            }
        )
    )
    _same(trained, _load(d))


def test_peft_adapter_bin(trained, tmp_path):
    d = save_peft_adapter(trained[0].model, SETTINGS, tmp_path / "adapter_bin")
    from safetensors.torch import load_file

    torch.save(load_file(str(d / "adapter_model.safetensors")), d / "adapter_model.bin")
    os.remove(d / "adapter_model.safetensors")
    _same(trained, _load(d))


def _of_source(seed: int = 7):
    """The tiny base with re-drawn OpenFlamingo parts (perceiver, gated xattn, embeddings)."""
    m = tiny()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.model.named_parameters():
            if n.startswith("perceiver.") or ".gated_cross_attn_layer." in n or n.endswith("embed_tokens.weight"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def _of_state(m, layout: str) -> dict:
    """OpenFlamingo checkpoint.pt from a model: perceiver + gated xattn (+ embeddings)."""
    sd = {}
    for n, p in m.model.named_parameters():
        if n.startswith("perceiver.") or ".gated_cross_attn_layer." in n or n.endswith("embed_tokens.weight"):
            sd[n] = p.detach().clone()
    if layout == "v1":  # v1 get_checkpoint kept the alias copies too
        for n in list(sd):
            mm = re.match(r"lang_encoder\.model\.layers\.(\d+)\.gated_cross_attn_layer\.(.*)", n)
            if mm:
                sd[f"lang_encoder.gated_cross_attn_layers.{mm.group(1)}.{mm.group(2)}"] = sd[n]
    return sd


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_openflamingo_checkpoint(layout, tmp_path):
    src = _of_source()
    p = tmp_path / "checkpoint.pt"
    torch.save(_of_state(src, layout), p)
    info = read_checkpoint(p)
    assert info.format == "openflamingo" and info.layout == layout
    loaded = _load(p)
    assert loaded.reports[-1].ok
    enc, px = probe_inputs(src)
    torch.testing.assert_close(logits(loaded, enc, px), logits(src, enc, px), atol=0, rtol=0)
    if layout == "v1":
        assert loaded.reports[-1].alias_duplicates == 2 * 11


def test_openflamingo_checkpoint_ddp_wrapped(tmp_path):
    src = _of_source()
    torch.save(
        {"model_state_dict": {"module." + k: v for k, v in _of_state(src, "v2").items()}}, tmp_path / "of_ddp.pt"
    )
    # a model_state_dict without LoRA is an OpenFlamingo-style full checkpoint in a trainer wrapper
    loaded = _load(tmp_path / "of_ddp.pt")
    enc, px = probe_inputs(src)
    torch.testing.assert_close(logits(loaded, enc, px), logits(src, enc, px), atol=0, rtol=0)


def test_no_checkpoint_is_baseline(tiny_model):
    assert tiny_model.checkpoint is None and not lora_modules(tiny_model.model)


def test_partial_load_is_an_error(trained, tmp_path):
    p = save_mmgpt_checkpoint(trained[0].model, SETTINGS, tmp_path / "ck.pt", kind="final")
    obj = torch.load(p, weights_only=True)
    victim = next(k for k in obj["model_state_dict"] if "gated_cross_attn_layer.attn.to_kv.lora_B" in k)
    del obj["model_state_dict"][victim]
    torch.save(obj, tmp_path / "partial.pt")
    with pytest.raises(UserError, match=r"did not load completely: 1 missing.*--allow-partial"):
        _load(tmp_path / "partial.pt")
    m = _load(tmp_path / "partial.pt", allow_partial=True)
    assert m.reports[-1].partial_allowed and len(m.reports[-1].missing) == 1


def test_unexpected_and_shape_mismatch_are_errors(trained, tmp_path):
    p = save_mmgpt_checkpoint(trained[0].model, SETTINGS, tmp_path / "ck.pt", kind="final")
    obj = torch.load(p, weights_only=True)
    obj["model_state_dict"]["lang_encoder.base_model.model.nonexistent.weight"] = torch.zeros(3)
    torch.save(obj, tmp_path / "unexpected.pt")
    with pytest.raises(UserError, match="unexpected"):
        _load(tmp_path / "unexpected.pt")
    of = _of_state(_of_source(3), "v2")
    k = next(k for k in of if k.endswith("attn.to_q.weight"))
    of[k] = torch.zeros(of[k].shape[0] + 1, of[k].shape[1])
    torch.save(of, tmp_path / "bad_shape.pt")
    with pytest.raises(UserError, match="shape mismatch"):
        _load(tmp_path / "bad_shape.pt")


def test_openflamingo_checkpoint_missing_xattn_is_error(tmp_path):
    of = _of_state(_of_source(3), "v2")
    for k in [k for k in of if "layers.1.gated_cross_attn_layer" in k]:
        del of[k]
    torch.save(of, tmp_path / "of_partial.pt")
    with pytest.raises(UserError, match="missing"):
        _load(tmp_path / "of_partial.pt")


def test_vocab_mismatch_names_both_sizes(tmp_path):
    of = _of_state(_of_source(3), "v2")
    k = next(k for k in of if k.endswith("embed_tokens.weight"))
    n = of[k].shape[0]
    of[k] = torch.zeros(n - 1, of[k].shape[1])  # like 32002 vs 32003
    torch.save(of, tmp_path / "vocab.pt")
    with pytest.raises(UserError, match=rf"embeddings have {n - 1} rows .* has {n}"):
        _load(tmp_path / "vocab.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_executes_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    with (tmp_path / "evil.pt").open("wb") as f:
        pickle.dump({"model_state_dict": {"x": evil}}, f)
    with pytest.raises(UserError, match="refusing to unpickle.*--trust-checkpoint"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # the same through the CLI: exit 2, one line, nothing executed
    rc = main(["inspect", str(tmp_path / "evil.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "refusing to unpickle" in err[0] and "posix.system" in err[0]
    assert not marker.exists()


def test_mmengine_config_read_without_mmengine(fixtures_dir):
    import sys

    assert "mmengine" not in sys.modules
    info = read_checkpoint(fixtures_dir / "mmgpt_checkpoint_mmengine_config.pt")
    assert (info.lora.r, info.lora.alpha) == (4, 8.0)
    assert info.metadata["tuning_config"]["lora_target_modules"][-1] == "ff.3"
    assert "mmengine" not in sys.modules


def test_canonical_key_mapping():
    ck = canonical_key
    assert (
        ck("module.lang_encoder.base_model.model.model.layers.3.decoder_layer.self_attn.q_proj.lora_A.default.weight")
        == "lang_encoder.model.layers.3.decoder_layer.self_attn.q_proj.lora_A.weight"
    )
    assert (
        ck("lang_encoder.gated_cross_attn_layers.1.attn.to_q.weight")
        == "lang_encoder.model.layers.1.gated_cross_attn_layer.attn.to_q.weight"
    )
    assert (
        ck("lang_encoder.old_decoder_blocks.0.mlp.up_proj.weight")
        == "lang_encoder.model.layers.0.decoder_layer.mlp.up_proj.weight"
    )
    assert (
        ck("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight")
        == "lang_encoder.model.layers.0.decoder_layer.self_attn.v_proj.lora_B.weight"
    )
    assert ck("vision_encoder.visual.conv1.weight") == "vision_encoder.conv1.weight"
    assert ck("lang_encoder.model.layers.0.self_attn.rotary_emb.inv_freq") is None
    assert (
        ck("lang_encoder.transformer.blocks.3.gated_cross_attn_layer.attn.to_q.weight", "transformer.blocks")
        == "lang_encoder.transformer.blocks.3.gated_cross_attn_layer.attn.to_q.weight"
    )


def test_inspect_cli(trained, tmp_path, capsys):
    p = save_mmgpt_checkpoint(trained[0].model, SETTINGS, tmp_path / "checkpoint_3.pt", kind="trainer", epoch=3)
    assert main(["inspect", str(p), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "mmgpt-trainer" and d["layout"] == "ddp-prefixed"
    assert d["lora"]["r"] == 4 and d["lora"]["alpha"] == 8 and d["lora"]["scaling"] == 2
    assert d["lora_modules"] == 18 and d["lora_module_kinds"]["gated_xattn:ff.1"] == 2
    assert d["metadata"]["epoch"] == 3
    assert main(["inspect", str(p)]) == 0
    assert "mmgpt-trainer" in capsys.readouterr().out
    desc = describe(read_checkpoint(p))
    assert desc["lora_parameters"] == sum(v.numel() for v in lora_state_dict(trained[0].model).values())


def test_unreadable_checkpoints(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")
    torch.save({"foo": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="neither LoRA tensors nor OpenFlamingo"):
        read_checkpoint(tmp_path / "other.pt")
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="adapter_config.json missing"):
        read_checkpoint(tmp_path / "d")
