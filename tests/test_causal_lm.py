"""The text-only ``causal-lm`` family through the same engine as Flamingo: generations equal a plain
greedy loop written here (one unbatched, uncached forward per token), ranking scores equal a plain
per-candidate forward, images are refused, and a spec TOML / ``mmgpt-eval predict`` load it."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mmgpt_eval.cli import main
from mmgpt_eval.engine import Engine, GenerationRequest, RankingRequest, engine_for
from mmgpt_eval.errors import UserError
from mmgpt_eval.generation_settings import GenerationSettings
from mmgpt_eval.model.build import load_model
from mmgpt_eval.model.causal_lm import CausalLMModel, LoadedCausalLM
from mmgpt_eval.model.seam import STOP_END_OF_CHUNK, STOP_EOS
from mmgpt_eval.model.spec import load_spec

PROMPTS = [
    "The answer is",
    "Below is an instruction that describes a task. Write a response.",
    "red circle",
    "how many shapes are there in this picture, and which colors do they have?",
    "a",
]
CANDIDATES = ["yes", "no", " red", "red circle", "a large green triangle", " blue square on top"]


@pytest.fixture(scope="module")
def lm():
    return load_model(load_spec("tiny-lm", {"device": "cpu"}))


def _plain_greedy(m: LoadedCausalLM, prompt: str, max_new: int, stop: int) -> list[int]:
    ids = m.tokenizer(prompt)["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = m.model(input_ids=torch.tensor([ids + new])).logits[0, -1]
            new.append(int(logits.argmax()))
            if new[-1] == stop:
                break
    return new


def _plain_score(m: LoadedCausalLM, context: str, candidate: str, joint: bool) -> float:
    if joint:
        stripped = context.rstrip(" ")
        context, candidate = stripped, context[len(stripped) :] + candidate
    ctx = m.tokenizer(context)["input_ids"]
    cand = (
        m.tokenizer(context + candidate)["input_ids"][len(ctx) :]
        if joint
        else m.tokenizer(candidate, add_special_tokens=False)["input_ids"]
    )
    with torch.no_grad():
        lp = torch.log_softmax(m.model(input_ids=torch.tensor([ctx + cand])).logits[0].float(), dim=-1)
    return sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(cand))


def test_generation_equals_plain_greedy_loop(lm):
    s = GenerationSettings(max_new_tokens=8)
    eos = lm.tokenizer.eos_token_id
    got = Engine(CausalLMModel(lm), batch_size=3).answer([GenerationRequest(p, settings=s) for p in PROMPTS])
    for p, g in zip(PROMPTS, got):
        want = _plain_greedy(lm, p, 8, eos)
        assert g.token_ids == want, p
        assert g.text == lm.tokenizer.decode(want, skip_special_tokens=True)
        assert g.stopped_on_eos == (eos in want)


def test_stop_rule_cuts_at_its_token(lm):
    """A stop token the greedy path reaches: the generation ends right after it."""
    s = GenerationSettings(max_new_tokens=8)
    model = CausalLMModel(lm)
    free = Engine(model, batch_size=8).answer([GenerationRequest(p, settings=s) for p in PROMPTS])
    p, g = next((p, g) for p, g in zip(PROMPTS, free) if len(g.token_ids) >= 3)
    stop_tok = g.token_ids[1]
    model.stop_token_ids = lambda stop: [stop_tok]  # the family's mapping, pointed at a token it will emit
    cut = Engine(model).answer([GenerationRequest(p, settings=s)])[0]
    assert cut.token_ids == g.token_ids[:2] and cut.stopped_on_eos


def test_ranking_equals_plain_forward(lm):
    reqs = [RankingRequest(p, CANDIDATES, joint=j) for p in PROMPTS for j in (False, True)]
    got = Engine(CausalLMModel(lm), batch_size=4).answer(reqs)
    worst = 0.0
    for q, scores in zip(reqs, got):
        assert len(scores) == len(CANDIDATES)
        for c, sc in zip(q.candidates, scores):
            worst = max(worst, abs(sc.sum_logprob - _plain_score(lm, q.context, c, q.joint)))
    assert worst < 1e-4, worst


def test_mixed_requests_in_input_order(lm):
    s = GenerationSettings(max_new_tokens=4)
    reqs = [
        GenerationRequest(PROMPTS[0], settings=s),
        RankingRequest(PROMPTS[1], CANDIDATES),
        GenerationRequest(PROMPTS[2], settings=s),
    ]
    a, r, b = engine_for(lm, batch_size=2).answer(reqs)
    assert a.token_ids == _plain_greedy(lm, PROMPTS[0], 4, lm.tokenizer.eos_token_id)
    assert b.token_ids == _plain_greedy(lm, PROMPTS[2], 4, lm.tokenizer.eos_token_id)
    assert len(r) == len(CANDIDATES)


def test_images_refused(lm, tmp_path):
    engine = engine_for(lm)
    with pytest.raises(UserError, match="model family causal-lm takes no images, but request 1 has 1"):
        engine.answer([GenerationRequest("hi"), GenerationRequest("<image>hi", ["x.png"])])
    with pytest.raises(UserError, match="takes no images"):
        engine.answer([RankingRequest("<image>hi", ["a"], ["x.png"])])
    assert CausalLMModel(lm).stop_token_ids(STOP_EOS) == [lm.tokenizer.eos_token_id]
    assert CausalLMModel(lm).stop_token_ids(STOP_END_OF_CHUNK) == [lm.tokenizer.convert_tokens_to_ids("<|endofchunk|>")]


def test_local_hf_folder_spec_and_predict(lm, tmp_path, capsys):
    """Any local Hugging Face folder: the tiny LM saved with save_pretrained loads from a TOML with
    family = "causal-lm" (tokenizer from the same folder) and answers as the preset does."""
    folder = tmp_path / "my-lm"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    spec = tmp_path / "judge.toml"
    spec.write_text('family = "causal-lm"\nlm = "my-lm"\ndevice = "cpu"\n')
    loaded = load_model(load_spec(spec))
    assert loaded.spec.tokenizer == str(folder.resolve()) and loaded.spec.to_dict()["family"] == "causal-lm"
    s = GenerationSettings(max_new_tokens=6)
    want = [g.token_ids for g in engine_for(lm).answer([GenerationRequest(p, settings=s) for p in PROMPTS])]
    assert [g.token_ids for g in engine_for(loaded).answer([GenerationRequest(p, settings=s) for p in PROMPTS])] == want

    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"id": f"c{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    out = tmp_path / "out.jsonl"
    rc = main(
        [
            "-q",
            "predict",
            "--model",
            str(spec),
            "--input",
            str(cases),
            "--output",
            str(out),
            "--max-new-tokens",
            "6",
            "--batch-size",
            "2",
        ]
    )
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(len(PROMPTS))]
    assert [r["token_ids"] for r in rows] == want

    Image.new("RGB", (8, 8), "red").save(tmp_path / "img.png")
    cases.write_text(
        json.dumps({"id": "t", "prompt": "hi"})
        + "\n"
        + json.dumps({"id": "v", "prompt": "<image>what is it?", "images": ["img.png"]})
        + "\n"
    )
    capsys.readouterr()
    rc = main(["-q", "predict", "--model", str(spec), "--input", str(cases), "--output", str(tmp_path / "o2.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not (tmp_path / "o2.jsonl").exists()
    assert err.count("\n") == 0 and "cases.jsonl:2: model family causal-lm takes no images" in err


def test_checkpoint_refused(tmp_path):
    with pytest.raises(UserError, match="model family causal-lm takes no checkpoint"):
        load_model(load_spec("tiny-lm", {"device": "cpu"}), tmp_path / "x.pt")
