"""The training recipe: data adapters (incl. the corrected dialogue pairing), tokenisation masks, loss
going down, resume, 2-process torchrun == 1 process, checkpoint round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mmgpt_eval.errors import UserError
from mmgpt_eval.train import data as D
from mmgpt_eval.train.config import load_config
from mmgpt_eval.train.loop import run_training

ROOT = Path(__file__).resolve().parents[1]


def _img(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), "red").save(path)


def test_llava_dialog_pairs_turns_correctly(tmp_path):
    _img(tmp_path / "imgs" / "a.jpg")
    conv = [
        {"from": "human", "value": "<image>\nWhat is it?"},
        {"from": "gpt", "value": "A red square."},
        {"from": "human", "value": "Why red?"},
        {"from": "gpt", "value": "It was painted red."},
        {"from": "human", "value": "Thanks"},
        {"from": "gpt", "value": "You are welcome."},
    ]
    (tmp_path / "conversation_58k.json").write_text(json.dumps([{"id": "1", "image": "a.jpg", "conversations": conv}]))
    ex = D.llava_dialog(tmp_path / "conversation_58k.json", tmp_path / "imgs")[0]
    # MultiModal-GPT's DialDataset paired (H0,G0), (G0,H1), (H1,G1) and dropped the tail
    assert ex.turns == [
        ("What is it?", "A red square."),
        ("Why red?", "It was painted red."),
        ("Thanks", "You are welcome."),
    ]
    single = tmp_path / "detail_23k.json"
    single.write_text(json.dumps([{"id": "2", "image": "a.jpg", "conversations": conv[:2]}]))
    assert D.llava_single(single, tmp_path / "imgs")[0].turns == [("What is it?", "A red square.")]


def test_paper_dataset_adapters(tmp_path):
    _img(tmp_path / "cc" / "image" / "7.jpg")
    (tmp_path / "cc" / "filter_cap.json").write_text(
        json.dumps({"annotations": [{"image_id": "7", "caption": "A cat."}]})
    )
    assert D.cc_sbu_align(tmp_path / "cc")[0].turns[0][1] == "A cat."
    _img(tmp_path / "coco" / "000000000009.jpg")
    (tmp_path / "aok.json").write_text(
        json.dumps(
            [
                {
                    "question_id": "q",
                    "image_id": 9,
                    "question": "What?",
                    "choices": ["a", "b"],
                    "correct_choice_idx": 1,
                    "rationales": ["First.", "Second."],
                }
            ]
        )
    )
    q, a = D.aokvqa(tmp_path / "aok.json", tmp_path / "coco")[0].turns[0]
    assert q.startswith("What? ") and a == "The answer is b. Because First. Second."
    _img(tmp_path / "k" / "train2014" / "x.jpg")
    (tmp_path / "karpathy.json").write_text(
        json.dumps(
            {
                "images": [
                    {"split": "train", "filepath": "train2014", "filename": "x.jpg", "sentences": [{"raw": "a dog."}]},
                    {"split": "test", "filepath": "train2014", "filename": "x.jpg", "sentences": [{"raw": "no."}]},
                ]
            }
        )
    )
    assert [e.turns[0][1] for e in D.coco_karpathy(tmp_path / "karpathy.json", tmp_path / "k")] == ["a dog."]
    _img(tmp_path / "ocr" / "11.jpg")
    (tmp_path / "ocr.json").write_text(json.dumps({"11": {"questions": ["Title?"], "answers": ["Moby Dick"]}}))
    assert D.ocr_vqa(tmp_path / "ocr.json", tmp_path / "ocr")[0].turns == [("Title?", "Moby Dick")]
    (tmp_path / "dolly.jsonl").write_text(
        json.dumps({"instruction": "Sum up", "context": "ctx", "response": "ok"}) + "\n"
    )
    assert D.dolly(tmp_path / "dolly.jsonl")[0].turns == [("Sum up\n\n### Input:\nctx", "ok")]
    (tmp_path / "alpaca.json").write_text(json.dumps([{"instruction": "Hi", "input": "", "output": "Hello there."}]))
    assert D.alpaca_gpt4(tmp_path / "alpaca.json")[0].kind == "lang"
    (tmp_path / "baize.json").write_text(
        json.dumps([{"input": "The conversation.\n[|Human|] Q1\n[|AI|] A1\n[|Human|] Q2\n[|AI|] A2\n[|Human|] "}])
    )
    assert D.baize(tmp_path / "baize.json")[0].turns == [("Q1", "A1"), ("Q2", "A2")]
    with pytest.raises(UserError, match="dataset dolly: expected file not found"):
        D.dolly(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="unknown dataset type 'nope'"):
        D.build_dataset([{"type": "nope"}])


def test_tokenization_masks(tiny_model):
    tok = tiny_model.tokenizer
    ex = D.Example([("what color is the shape?", "blue")], D.ImageRef(key="k", path="x"))
    t = D.tokenize_example(ex, tok)
    assert t.input_ids[0] == tok.bos_token_id and t.input_ids[-1] == tok.eos_token_id
    targets = [x for x in t.labels if x != D.IGNORE]
    assert tok.decode(targets, skip_special_tokens=True).strip() == "blue" and targets[-1] == tok.eos_token_id
    assert tiny_model.media_token_id in t.input_ids and tiny_model.media_token_id not in targets
    multi = D.Example([("q one", "a one"), ("q two", "a two")], None, kind="lang")
    m = D.tokenize_example(multi, tok)
    assert m.input_ids.count(tok.bos_token_id) == 2 and m.input_ids.count(tok.eos_token_id) == 2
    decoded = tok.decode([x for x in m.labels if x != D.IGNORE], skip_special_tokens=True)
    assert "a one" in decoded and "a two" in decoded and "q two" not in decoded and "Instruction" not in decoded
    of = D.Example([("is it red?", "yes")], D.ImageRef(key="k", path="x"), style="openflamingo")
    o = D.tokenize_example(of, tok)
    assert tok.decode(o.input_ids, skip_special_tokens=False).endswith("Short answer:yes<|endofchunk|>")


def _recipe(tmp_path, name="r", steps=3, batch=4, extra="", lr=3e-3) -> Path:
    f = tmp_path / f"{name}.toml"
    f.write_text(f'''
model = "tiny"
mode = "lora"
output_dir = "{tmp_path / name}"
[lora]
r = 4
alpha = 8
[optim]
lr = {lr}
warmup_steps = 1
scheduler = "constant"
grad_accum = 2
[train]
steps = {steps}
batch_size = {batch}
per_image = 2
seed = 0
log_every = 1
{extra}
[[data.vision]]
type = "easyvqa"
sample = 16
balance = false
[[data.language]]
type = "language"
n = 8
''')
    return f


def test_loss_goes_down_and_checkpoints_round_trip(tmp_path):
    from helpers import probe_inputs, logits
    from mmgpt_eval.model.build import load_model
    from mmgpt_eval.model.spec import load_spec
    from mmgpt_eval.train.loop import Trainer

    cfg = load_config(_recipe(tmp_path, steps=12, lr=2e-2))
    trainer = Trainer(cfg)
    trainer.train()
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    first = {k: sum(r[k] for r in rows[:3]) / 3 for k in ("loss_vl", "loss_lang")}
    last = {k: sum(r[k] for r in rows[-3:]) / 3 for k in ("loss_vl", "loss_lang")}
    # LoRA on a random tiny LM: the short VL answers are fitted fast, long language answers slowly
    assert last["loss_vl"] < 0.9 * first["loss_vl"] and last["loss_lang"] < first["loss_lang"]
    trainer.model.eval()
    enc, px = probe_inputs(trainer.loaded)
    ref = logits(trainer.loaded, enc, px)
    for ck in (tmp_path / "r" / "final", tmp_path / "r" / "final.pt"):
        m = load_model(load_spec("tiny", {"device": "cpu"}), ck)
        assert m.reports[-1].ok and not m.reports[-1].missing and m.reports[-1].matched
        torch.testing.assert_close(logits(m, enc, px), ref, atol=1e-6, rtol=0)
    meta = json.loads((tmp_path / "r" / "final" / "mmgpt_eval.json").read_text())
    assert meta["model_spec"]["name"] == "tiny"


def test_resume_continues_exactly(tmp_path):
    straight = load_config(_recipe(tmp_path, "straight", steps=4))
    run_training(straight)
    resumed = load_config(_recipe(tmp_path, "resumed", steps=2))
    run_training(resumed)
    resumed.steps = 4
    run_training(resumed)
    a = load_file(str(tmp_path / "straight" / "final" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final" / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path):
    one = _recipe(tmp_path, "one", steps=3, batch=4)
    two = _recipe(tmp_path, "two", steps=3, batch=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run_training(load_config(one))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mmgpt_eval",
        "-q",
        "train",
        "--config",
        str(two),
        "--threads",
        "1",
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "train_summary.json").read_text())["world_size"] == 2
    a = load_file(str(tmp_path / "one" / "final" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    # gradients agree up to float summation order; Adam divides by sqrt(v), which can magnify that for
    # entries whose gradient is ~0, so allow a small fraction of one step (lr 3e-3) per element
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=5e-4, rtol=1e-3)
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert diffs.median() < 1e-6  # the typical element is identical
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "lora_B" in k)  # it did train


def test_recipe_errors(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('mode = "lora"\n[optim]\nlearning_rate = 1\n')
    with pytest.raises(UserError, match="unknown key 'learning_rate' in \\[optim\\]"):
        load_config(f)
    f.write_text('mode = "sideways"\n')
    with pytest.raises(UserError, match="mode must be lora or pretrain"):
        load_config(f)


def test_loss_reductions():
    """``token`` is the HF loss MultiModal-GPT trained with (mean over every target token of the
    batch); ``sequence`` weighs each sequence's mean equally. Hand-made logits and labels."""
    from mmgpt_eval.train.loop import n_targets, sequence_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6], [-100, -100, -100, -100, -100, 7]])
    per_tok = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="none"
    ).view(2, 5)
    hf_mean = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(sequence_loss(logits, labels, "token") / 5, hf_mean)
    seq = per_tok[0, 1:].mean() + per_tok[1, 4]
    torch.testing.assert_close(sequence_loss(logits, labels, "sequence"), seq)
    assert n_targets(D.Tokenized([1, 2, 3, 4, 5, 6], labels[0].tolist(), None)) == 4


def test_loss_reduction_is_validated(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[train]\nloss_reduction = "median"\n')
    with pytest.raises(UserError, match="loss_reduction must be token or sequence"):
        load_config(f)


def _pretrain_recipe(tmp_path, name: str, deterministic: str) -> Path:
    """A few steps of stage 1: every parameter trained, 4 questions per image, so the gradient of each
    image's features is summed over its rows (the index_put_ accumulate of the docstring below)."""
    f = tmp_path / f"{name}.toml"
    f.write_text(f'''
model = "tiny"
mode = "pretrain"
output_dir = "{tmp_path / name}"
[optim]
lr = 1e-3
warmup_steps = 1
[train]
steps = 3
batch_size = 64
language_batch_size = 4
per_image = 4
seed = 0
log_every = 1
deterministic = "{deterministic}"
[[data.vision]]
type = "easyvqa"
style = "openflamingo"
sample = 256
[[data.language]]
type = "plain_text"
n = 16
''')
    return f


def test_training_is_bitwise_repeatable(tmp_path, monkeypatch):
    """Same recipe and seed twice on CPU: deterministic kernels during training (and only then), and
    bitwise-identical weights and losses. Without deterministic kernels the backward of indexing with
    repeated indices (index_put_ with accumulate: per-image features to their rows) adds in a
    thread-timing-dependent order now and then (losses of two 100-step stage-1 runs parted at step 71),
    and make reproduce twice differed by 6 points."""
    from safetensors.torch import load_file as load

    from mmgpt_eval.train.loop import TrainStep

    seen: list[bool] = []
    forward = TrainStep.forward
    monkeypatch.setattr(
        TrainStep,
        "forward",
        lambda self, *a, **k: seen.append(torch.are_deterministic_algorithms_enabled()) or forward(self, *a, **k),
    )
    before = torch.are_deterministic_algorithms_enabled()
    for name in ("a", "b"):
        run_training(load_config(_pretrain_recipe(tmp_path, name, "cpu")))
    assert seen and all(seen)
    assert torch.are_deterministic_algorithms_enabled() == before  # restored for evaluation in the process
    seen.clear()
    cfg = load_config(_pretrain_recipe(tmp_path, "n", "never"))
    cfg.steps = 1
    run_training(cfg)
    assert seen and not any(seen)
    a = load(str(tmp_path / "a" / "final" / "lm" / "model.safetensors"))
    b = load(str(tmp_path / "b" / "final" / "lm" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    va, vb = (load(str(tmp_path / n / "final" / "vision_tower.safetensors")) for n in ("a", "b"))
    assert all(torch.equal(va[k], vb[k]) for k in va)
    fa, fb = (torch.load(tmp_path / n / "final" / "openflamingo_checkpoint.pt", weights_only=True) for n in ("a", "b"))
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)  # Perceiver, cross-attention
    la, lb = ((tmp_path / n / "metrics.jsonl").read_text() for n in ("a", "b"))

    def strip(t: str) -> list[dict]:
        return [{k: v for k, v in json.loads(x).items() if k not in ("step_s", "elapsed_s")} for x in t.splitlines()]

    assert strip(la) == strip(lb)
    with pytest.raises(UserError, match="deterministic must be cpu, always or never"):
        load_config(_pretrain_recipe(tmp_path, "c", "sometimes"))


def test_deterministic_kernels_restore_the_callers_setting():
    """A caller's own use_deterministic_algorithms(True, warn_only=True) survives a training."""
    from mmgpt_eval.train.config import TrainConfig
    from mmgpt_eval.train.loop import deterministic_kernels

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        with deterministic_kernels(TrainConfig(device="cpu")) as on:
            assert on and torch.are_deterministic_algorithms_enabled()
            assert not torch.is_deterministic_algorithms_warn_only_enabled()  # training itself: strict
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
