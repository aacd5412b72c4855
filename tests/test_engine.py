"""The request-answering engine (mmgpt_eval/engine.py) over the Flamingo family, and the family
registry / model seam: the engine gives exactly what the family's generator and ranker give alone,
in input order, backs off on out-of-memory, and Flamingo specs keep their identity."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmgpt_eval.engine import Engine, GenerationRequest, RankingRequest, engine_for
from mmgpt_eval.errors import UserError
from mmgpt_eval.generation_settings import GenerationSettings
from mmgpt_eval.model.families import eval_model, family_names, get_family
from mmgpt_eval.model.flamingo.family import FlamingoModel
from mmgpt_eval.model.generate import Generator, PromptInput
from mmgpt_eval.model.rank import Ranker, RankInput
from mmgpt_eval.model.seam import STOP_END_OF_CHUNK, STOP_END_OF_TURN, STOP_EOS, STOP_RULES, EvalModel
from mmgpt_eval.model.spec import load_spec
from mmgpt_eval.templates import TEMPLATES


def _image(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy())


QUESTIONS = [
    "what color is it?",
    "is there a circle?",
    "how many shapes are there in the picture?",
    "describe it.",
    "what is on the left?",
]


def _requests():
    greedy = GenerationSettings(max_new_tokens=6)
    beams = GenerationSettings(max_new_tokens=5, num_beams=2)
    gen = [
        GenerationRequest(TEMPLATES["mmgpt"].render(question=q), [_image(i % 3)], [f"k{i % 3}"], greedy)
        for i, q in enumerate(QUESTIONS)
    ]
    gen.append(
        GenerationRequest("<image>Question:what is it? Short answer:", [_image(1)], ["k1"], beams, STOP_END_OF_CHUNK)
    )
    gen.append(GenerationRequest(TEMPLATES["mmgpt-text"].render(question="write a poem"), [], None, greedy))
    rank = [
        RankingRequest("<image>Output:", ["red", "blue square", "a circle"], [_image(2)], ["k2"]),
        RankingRequest("<image>Question:is it red? Answer:", [" yes", " no"], [_image(0)], ["k0"], joint=True),
    ]
    # interleaved, so input order is not group order
    return [gen[0], rank[0], gen[5], gen[1], gen[6], rank[1], gen[2], gen[3], gen[4]]


def test_engine_equals_generator_and_ranker(tiny_model):
    reqs = _requests()
    got = Engine(FlamingoModel(tiny_model), batch_size=4).answer(reqs)
    gen, ranker = Generator(tiny_model), None
    ranker = Ranker(gen)
    for q, a in zip(reqs, got):
        if isinstance(q, RankingRequest):
            want = ranker.score([RankInput(q.context, q.images, q.candidates, q.image_keys, q.joint)])[0]
            assert [s.sum_logprob for s in a] == pytest.approx([s.sum_logprob for s in want], abs=1e-5)
        else:
            want = gen.generate([PromptInput(q.prompt, q.images, q.image_keys)], q.settings, q.stop)[0]
            assert a.token_ids == want.token_ids and a.text == want.text


def test_engine_batch_size_invariance(tiny_model):
    reqs = _requests()
    one = Engine(FlamingoModel(tiny_model), batch_size=1).answer(reqs)
    many = Engine(FlamingoModel(tiny_model), batch_size=16).answer(reqs)
    for a, b in zip(one, many):
        if isinstance(a, list):
            assert [s.sum_logprob for s in a] == pytest.approx([s.sum_logprob for s in b], abs=1e-4)
        else:
            assert a.token_ids == b.token_ids


class _SmallMemory(FlamingoModel):
    """The real Flamingo family on a device that runs out of memory above two rows."""

    def generate_batch(self, prompts, settings, stop):
        if len(prompts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().generate_batch(prompts, settings, stop)


def test_out_of_memory_halves_and_remembers(tiny_model):
    reqs = [q for q in _requests() if isinstance(q, GenerationRequest) and q.settings.num_beams == 1 and q.images][:4]
    want = Engine(FlamingoModel(tiny_model), batch_size=8).answer(reqs)
    engine = Engine(_SmallMemory(tiny_model), batch_size=8)
    got = engine.answer(reqs)
    assert [g.token_ids for g in got] == [g.token_ids for g in want]
    assert engine.oom_events >= 1 and engine.batch_size() == 2


def test_stop_rules_are_symbols(tiny_model):
    assert {t.stop for t in TEMPLATES.values()} <= set(STOP_RULES)
    m = FlamingoModel(tiny_model)
    assert isinstance(m, EvalModel)
    assert m.stop_token_ids(STOP_END_OF_CHUNK) == [tiny_model.eoc_token_id]
    assert m.stop_token_ids(STOP_EOS) == m.stop_token_ids(STOP_END_OF_TURN) == [tiny_model.tokenizer.eos_token_id]
    with pytest.raises(UserError, match="unknown stop rule 'nope'"):
        Engine(m).answer([GenerationRequest("hi", stop="nope")])


def test_registry_and_default_family_identity(tiny_model):
    assert {"flamingo", "causal-lm"} <= set(family_names())
    spec = load_spec("tiny")
    assert spec.family == "flamingo" and "family" not in spec.to_dict()  # fingerprints and results as before
    assert isinstance(eval_model(tiny_model), FlamingoModel)
    assert isinstance(engine_for(tiny_model).model, FlamingoModel)
    with pytest.raises(UserError, match="unknown model family 'llava'"):
        get_family("llava")


def test_unknown_family_in_spec(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('preset = "tiny"\nfamily = "llava"\n')
    with pytest.raises(UserError, match=r"m.toml: family must be one of flamingo, causal-lm"):
        load_spec(f)


def test_automatic_batch_size_holds_a_cpu_token_budget():
    """Rows x beams x padded prompt tokens stay within the CPU budget, never below 8 rows; a GPU keeps
    its large start (the out-of-memory back-off finds what fits there)."""
    from mmgpt_eval.model.batching import MIN_AUTO_ROWS, TOKEN_BUDGET, auto_rows, batches_by_image_count

    budget = TOKEN_BUDGET["cpu"]
    assert auto_rows("cpu", 3) == 21 and auto_rows("cpu", 1) == 64 and auto_rows("cuda", 1) == 256
    assert auto_rows("cpu", 3, prompt_tokens=150) == max(MIN_AUTO_ROWS, budget // 450)
    assert auto_rows("cpu", 1, prompt_tokens=20) == min(64, budget // 20)
    assert auto_rows("cpu", 1, prompt_tokens=10_000) == MIN_AUTO_ROWS
    assert auto_rows("cuda", 3, prompt_tokens=10_000) == 85
    items = [PromptInput("x" * n) for n in (10, 20, 30, 40)]
    assert batches_by_image_count(items, 4) == [[0, 1, 2, 3]]
    assert batches_by_image_count(items, 4, [10, 20, 30, 40], lambda width: 100 // width) == [[0, 1, 2], [3]]


def test_automatic_batches_answer_as_batch_8(tiny_model):
    reqs = _requests()
    auto = Engine(FlamingoModel(tiny_model), batch_size=0)
    assert auto.batch_size() == 64 and auto.batch_size(3) == 21
    for a, b in zip(auto.answer(reqs), Engine(FlamingoModel(tiny_model), batch_size=8).answer(reqs)):
        if isinstance(a, list):
            assert [s.sum_logprob for s in a] == pytest.approx([s.sum_logprob for s in b], abs=1e-4)
        else:
            assert a.token_ids == b.token_ids


def test_rows_that_fit_one_automatic_batch(tiny_model):
    from mmgpt_eval.model.batching import TOKEN_BUDGET

    model = FlamingoModel(tiny_model)
    long = GenerationRequest(
        "<image>Output:a red circle<|endofchunk|>" * 4 + "<image>Output:",
        [_image(0)] * 5,
        [f"k{i}" for i in range(5)],
        GenerationSettings(num_beams=3),
    )
    width = model.prompt_tokens([long.as_input()])[0]
    auto, fixed = Engine(model, batch_size=0), Engine(model, batch_size=5)
    assert fixed.rows_that_fit([long] * 30, 3) == 5 and fixed.rows_that_fit([long] * 2, 3) == 2
    assert auto.rows_that_fit([long] * 30, 3) == min(21, max(8, TOKEN_BUDGET["cpu"] // (3 * width)))
    short = GenerationRequest("hi", settings=GenerationSettings())
    assert auto.rows_that_fit([short] * 100, 1) == 64 and auto.rows_that_fit([], 1) == 0
