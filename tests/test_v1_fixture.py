"""MultiModal-GPT v1 faithfulness: reproduce the outputs of the original code (tests/fixtures/mmgpt_v1)
from the fixture's files alone, through the Python API and through `predict`."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import V1, V1_SPEC
from mmgpt_eval.cli import main
from mmgpt_eval.model.build import load_model
from mmgpt_eval.model.spec import load_spec

EXP = load_file(str(V1 / "expected.safetensors"))
EXPJ = json.loads((V1 / "expected.json").read_text())
CASES = [json.loads(line) for line in (V1 / "prompts.jsonl").read_text().splitlines() if line.strip()]
VISION = [c for c in CASES if c["kind"] == "vision"]
TEXT = [c for c in CASES if c["kind"] == "text"]
ATOL = 1e-4


def _load(ckpt=None):
    return load_model(load_spec(V1_SPEC), ckpt)


@pytest.fixture(scope="module")
def lora():
    return _load(V1 / "mmgpt_checkpoint_0.pt")


@pytest.fixture(scope="module")
def base():
    return _load(None)


def _vision_inputs(m):
    enc = m.tokenizer([c["prompt"] for c in VISION], return_tensors="pt", padding=True)
    px = torch.stack([m.image_processor(Image.open(V1 / c["image"])) for c in VISION])[:, None, None]
    return enc, px


def _text_inputs(m):
    return m.tokenizer([c["prompt"] for c in TEXT], return_tensors="pt", padding=True)


def test_inputs_match(lora):
    enc, px = _vision_inputs(lora)
    assert torch.equal(enc.input_ids, EXP["vision.input_ids"])
    assert torch.equal(enc.attention_mask, EXP["vision.attention_mask"])
    assert torch.equal(_text_inputs(lora).input_ids, EXP["text.input_ids"])
    assert (px - EXP["vision.pixel_values"]).abs().max().item() == 0.0


@pytest.mark.parametrize("variant", ["lora", "base"])
def test_logits(variant, lora, base):
    m = lora if variant == "lora" else base
    enc, px = _vision_inputs(m)
    with torch.no_grad():
        out = m.model(vision_x=px, lang_x=enc.input_ids, attention_mask=enc.attention_mask).logits
        tout = m.model(
            vision_x=None, lang_x=_text_inputs(m).input_ids, attention_mask=_text_inputs(m).attention_mask
        ).logits
    torch.testing.assert_close(out[:, -1], EXP[f"{variant}.vision.logits_last"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out[:, -8:], EXP[f"{variant}.vision.logits_last8"], atol=ATOL, rtol=0)
    torch.testing.assert_close(tout[:, -1], EXP[f"{variant}.text.logits_last"], atol=ATOL, rtol=0)
    mask = EXP["vision.attention_mask"].bool()
    argmax = out.argmax(-1).masked_fill(~mask, -1)
    assert torch.equal(argmax, EXP[f"{variant}.vision.argmax_all"])
    lse = torch.logsumexp(out, -1).masked_fill(~mask, 0.0)
    torch.testing.assert_close(lse, EXP[f"{variant}.vision.logsumexp_all"], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "key,beams,cache",
    [
        ("gen_beams1", 1, True),
        ("gen_beams3", 3, True),
        ("gen_beams1_nocache", 1, False),
        ("gen_beams3_nocache", 3, False),
    ],
)
def test_generate_lora(lora, key, beams, cache):
    enc, px = _vision_inputs(lora)
    tenc = _text_inputs(lora)
    kw = dict(max_new_tokens=12, num_beams=beams, do_sample=False, use_cache=cache, eos_token_id=2, pad_token_id=2)
    with torch.no_grad():
        g = lora.model.generate(px, enc.input_ids, attention_mask=enc.attention_mask, **kw)
        gt = lora.model.generate(None, tenc.input_ids, attention_mask=tenc.attention_mask, **kw)
    assert torch.equal(g, EXP[f"lora.vision.{key}.sequences"])
    assert torch.equal(gt, EXP[f"lora.text.{key}.sequences"])


def test_generate_base(base):
    enc, px = _vision_inputs(base)
    with torch.no_grad():
        g = base.model.generate(
            px, enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=12, eos_token_id=2, pad_token_id=2
        )
    assert torch.equal(g, EXP["base.vision.gen_beams1.sequences"])


def test_v1_default_eos_is_lm_eos(lora):
    assert lora.model.default_eos_token_id() == 2  # </s>, never <|endofchunk|> for MultiModal-GPT


@pytest.mark.parametrize("ckpt", ["mmgpt_final_weights.pt", "../mmgpt_checkpoint_mmengine_config.pt"])
def test_other_mmgpt_files_load_identically(ckpt, lora):
    """final_weights.pt (which the original demo silently loads nothing from) and a checkpoint whose
    tuning_config is a pickled mmengine Config give exactly the same model."""
    m = _load(V1 / ckpt)
    assert m.checkpoint.lora.r == 4 and m.checkpoint.lora.alpha == 8
    for (n1, p1), (n2, p2) in zip(lora.model.named_parameters(), m.model.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def _expected_new(case, variant):
    ids = case["outputs"][variant]["new_token_ids"]
    return ids[: ids.index(2) + 1] if 2 in ids else ids


@pytest.mark.parametrize("beams", [1, 3])
def test_predict_cli_reproduces_fixture(tmp_path, beams):
    cases = tmp_path / "cases.jsonl"
    with cases.open("w") as f:
        for c in CASES:
            row = {"id": c["id"], "prompt": c["prompt"], "images": [str(V1 / c["image"])] if c["image"] else []}
            f.write(json.dumps(row) + "\n")
    out = tmp_path / "out.jsonl"
    rc = main(
        [
            "-q",
            "predict",
            "--model",
            str(V1_SPEC),
            "--ckpt",
            str(V1 / "mmgpt_checkpoint_0.pt"),
            "--input",
            str(cases),
            "--output",
            str(out),
            "--max-new-tokens",
            "12",
            "--num-beams",
            str(beams),
            "--batch-size",
            "6",
        ]
    )
    assert rc == 0
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    for case in EXPJ["cases"]:
        variant = f"lora.{case['batch']}.gen_beams{beams}"
        assert got[case["id"]]["token_ids"] == _expected_new(case, variant), case["id"]
        assert got[case["id"]]["text"] == case["outputs"][variant]["response"], case["id"]
        assert len(got[case["id"]]["prompt_hash"]) == 64
