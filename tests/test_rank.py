"""Log-likelihood ranking (mmgpt_eval/model/rank.py) against a plain path written here: every
(context, candidate) pair scored alone, unbatched, uncached, unpadded, images as pixels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from helpers import plain_candidate_logprob, tiny_with_random_lora
from mmgpt_eval.model.generate import Generator
from mmgpt_eval.model.rank import Ranker, RankInput, softmax_of, top_k

CANDIDATES = [
    "yes",
    "no",
    "red",
    "red circle",
    "red circle on top",
    "blue square",
    "a large green triangle",
    "circle",
    "teal",
]


def _open_gates(m):
    with torch.no_grad():
        for b in m.model.lang_encoder.gated_cross_attn_layers:
            if b is not None:
                b.attn_gate.fill_(1.0)
                b.ff_gate.fill_(1.0)
    return m


@pytest.fixture(scope="module", params=["v1", "v2"])
def model(request):
    return _open_gates(tiny_with_random_lora(flamingo_version=request.param))


def _image(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy())


def _inputs() -> list[RankInput]:
    """0-shot (text demos, one image), few-shot (three images), different lengths (padding)."""
    zero = "Output:red circle<|endofchunk|>Output:blue<|endofchunk|>"
    out = []
    for i, q in enumerate(
        [
            "<image>Output:",
            "<image>is an image with: 'hello there' written on it. Answer:",
            zero + "<image>Output:",
            "<image>Question:what is it? Short answer:",
        ]
    ):
        out.append(RankInput(q, [_image(i)], CANDIDATES, [f"img{i}"]))
    few = "<image>Output:red circle<|endofchunk|><image>Output:a large green triangle<|endofchunk|><image>Output:"
    out.append(RankInput(few, [_image(10), _image(11), _image(12)], CANDIDATES, ["d0", "d1", "q"]))
    out.append(
        RankInput(
            "<image>Output:red<|endofchunk|><image>Output:blue square<|endofchunk|>x y z <image>Output:",
            [_image(10), _image(13), _image(14)],
            CANDIDATES[::-1],
            ["d0", "d3", "q2"],
        )
    )
    # OpenFlamingo's 0-shot classification: the two demos' images are passed without their <image> tokens
    out.append(RankInput(zero + "<image>Output:", [_image(10), _image(11), _image(15)], CANDIDATES, ["d0", "d1", "q3"]))
    return out


def _plain(m, x: RankInput, cand: str) -> float:
    return plain_candidate_logprob(m, x.text, x.images, cand, joint=x.joint)[0]


def test_batched_cached_equals_plain(model):
    inputs = _inputs()
    # small candidate chunks: leaves from several contexts share a forward, and split across forwards
    got = Ranker(Generator(model), candidate_batch=5).score(inputs, batch_size=8)
    worst = 0.0
    for x, scores in zip(inputs, got):
        for cand, s in zip(x.candidates, scores):
            want = _plain(model, x, cand)
            worst = max(worst, abs(s.sum_logprob - want))
            assert s.n_tokens == len(model.tokenizer(cand, add_special_tokens=False)["input_ids"])
    assert worst < 1e-4, worst


def test_batch_size_and_chunking_invariance(model):
    inputs = _inputs()
    a = Ranker(Generator(model), candidate_batch=1).score(inputs, batch_size=1)
    b = Ranker(Generator(model), candidate_batch=1000).score(inputs, batch_size=16)
    for ra, rb in zip(a, b):
        for sa, sb in zip(ra, rb):
            assert abs(sa.sum_logprob - sb.sum_logprob) < 1e-4
            assert sa.is_greedy == sb.is_greedy


def test_joint_tokenization(model):
    """Candidates tokenized as they read after the context (lm-evaluation-harness's rule)."""
    inputs = [RankInput(x.text + " ", x.images, x.candidates, x.image_keys, joint=True) for x in _inputs()[:3]]
    got = Ranker(Generator(model), candidate_batch=4).score(inputs, batch_size=3)
    for x, scores in zip(inputs, got):
        for cand, s in zip(x.candidates, scores):
            assert abs(s.sum_logprob - _plain(model, x, cand)) < 1e-4


def test_text_only_context():
    m = tiny_with_random_lora()
    x = RankInput("Below is a question. Answer:", [], ["yes", "no", "red circle"])
    got = Ranker(Generator(m)).score([x])[0]
    for cand, s in zip(x.candidates, got):
        assert abs(s.sum_logprob - _plain(m, x, cand)) < 1e-4


def test_candidates_see_the_image():
    """v2: candidate tokens attend the context's last image; another image changes their scores."""
    m = _open_gates(tiny_with_random_lora(flamingo_version="v2"))
    r = Ranker(Generator(m))
    a, b = (r.score([RankInput("<image>Output:", [_image(s)], ["red circle on top"], [f"k{s}"])])[0][0] for s in (1, 2))
    assert abs(a.sum_logprob - b.sum_logprob) > 1e-4


def test_prefix_sharing_runs_only_trie_leaves(tiny_model):
    r = Ranker(Generator(tiny_model))
    r.score([RankInput("<image>Output:", [_image(0)], ["red", "red circle", "red circle on top", "blue"], ["k"])])
    # 'red circle on top'[:-1] contains 'red circle'[:-1]: one leaf row for the three 'red' candidates
    toks = [r.candidate_tokens(c) for c in ["red", "red circle", "red circle on top", "blue"]]
    leaves = {tuple(t[:-1]) for t in toks if len(t) > 1}
    maximal = [s for s in leaves if not any(o != s and o[: len(s)] == s for o in leaves)]
    assert r.candidate_rows == len(maximal)


def test_greedy_flag_and_helpers(tiny_model):
    r = Ranker(Generator(tiny_model))
    x = RankInput("<image>Output:", [_image(0)], ["red", "blue", "teal"], ["k"])
    scores = r.score([x])[0]
    ctx = tiny_model.tokenizer(x.text, return_tensors="pt")
    px = tiny_model.image_processor(_image(0))[None, None, None]
    with torch.no_grad():
        best = int(tiny_model.model(vision_x=px, lang_x=ctx.input_ids).logits[0, -1].argmax())
    for cand, s in zip(x.candidates, scores):
        toks = r.candidate_tokens(cand)
        if len(toks) == 1:
            assert s.is_greedy == (toks[0] == best)
    assert top_k([0.1, 0.5, 0.3], ["a", "b", "c"], 2) == [("b", 0.5), ("c", 0.3)]
    assert abs(sum(softmax_of([0.1, 0.5, 0.3], i) for i in range(3)) - 1) < 1e-12
