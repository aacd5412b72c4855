"""Judge backends over real HTTP on 127.0.0.1: a small OpenAI-compatible server (FastAPI + uvicorn,
started here) wraps scripted judges, chosen by model name. Answers carry their true quality as
``q<N>``; the scripted judges read it back, with known noise seeded by the request's seed (the repeat
index). Also: the local causal-LM judge through the shipped ``tiny-lm`` preset."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import socket
import threading
from collections import Counter

import numpy as np
import pytest
from http_servers import chat_completion, served
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mmgpt_eval.errors import UserError
from mmgpt_eval.judge.backends import LocalLMJudge, OpenAIJudge
from mmgpt_eval.judge.cache import JudgmentCache
from mmgpt_eval.judge.modes import AnswerItem, JudgeRunner
from mmgpt_eval.judge.prompts import RUBRIC
from mmgpt_eval.judge.reliability import (
    dimension_means,
    fleiss_kappa,
    hierarchical_interval,
    krippendorff_alpha,
    outcome_matrix,
    parse_failure_rate,
    position_bias_rate,
    relative_score,
    score_difference_interval,
    score_matrix,
    verdict_counts,
)

KEY = "test-key"
MODELS = ("first", "exact", "noisy", "random", "malformed", "flaky", "storm", "slow", "hang")


class Script:
    """The server's state: requests seen per model, the reply's model id per requested model."""

    def __init__(self):
        self.requests: Counter[str] = Counter()
        self.reply_model: dict[str, str] = {}
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0


def _section(text: str, title: str) -> str:
    return text.split(f"[{title}]\n", 1)[1].split("\n\n", 1)[0]


def _q(answer: str) -> int:
    return int(re.search(r"q(\d+)", answer).group(1))


def _reply(model: str, text: str, seed: int, state: Script) -> str:
    rng = random.Random(hashlib.sha256(f"{seed}|{text}".encode()).hexdigest())
    noise = {"exact": 0.0, "noisy": 1.5}.get(model, 0.0)

    def judged(q: int) -> int:
        if model == "random":
            return rng.randint(1, 10)
        return min(10, max(1, round(q + rng.gauss(0, noise))))

    if "[Reply A]" in text:
        if model == "first":
            return "The first reply is better.\nVERDICT: A"
        a, b = judged(_q(_section(text, "Reply A"))), judged(_q(_section(text, "Reply B")))
        return "Compared.\nVERDICT: " + ("A" if a > b else "B" if b > a else "tie")
    if "[Reference reply]" in text:
        ref, cand = judged(_q(_section(text, "Reference reply"))), judged(_q(_section(text, "Candidate reply")))
        return f"Scored.\nSCORES: reference={ref}; candidate={cand}"
    q = _q(_section(text, "Reply to grade"))
    if model == "malformed" and q % 2:
        return f"I would give this answer {q} out of 10."
    s = judged(q)
    return f"Graded.\nSCORES: helpfulness={s}; accuracy={s}; detail={s}"


def _app(state: Script) -> FastAPI:
    app = FastAPI()

    def _auth(request: Request):
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        return None

    @app.get("/v1/models")
    async def models(request: Request):
        refused = _auth(request)
        if refused:
            return refused
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in MODELS]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    @app.post("/nolist/v1/chat/completions")  # a server without GET /v1/models
    async def chat(request: Request):
        refused = _auth(request)
        if refused:
            return refused
        body = await request.json()
        model, text = body["model"], body["messages"][-1]["content"]
        if model not in MODELS:
            return JSONResponse({"error": {"message": f"model {model} not found"}}, status_code=404)
        probe = text == "Reply with OK."
        with state.lock:
            if not probe:
                state.requests[model] += 1
            seen = f"{model}|{body.get('seed')}|{text}"
            first_time = seen not in state.seen
            state.seen.add(seen)
        if not probe and (model == "storm" or (model == "flaky" and first_time)):
            if model == "flaky" and _q(_section(text, "Reply to grade")) % 2:
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429)
        if not probe and model in ("slow", "hang"):
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            await asyncio.sleep(0.05 if model == "slow" else 1.0)
            with state.lock:
                state.in_flight -= 1
        content = "OK" if probe else _reply(model, text, int(body.get("seed") or 0), state)
        return chat_completion(state.reply_model.get(model, model), content, text, 12)

    return app


@pytest.fixture(scope="module")
def server():
    state = Script()
    with served(_app(state)) as url:
        yield url, state


def _judge(url: str, model: str, **kw) -> OpenAIJudge:
    kw.setdefault("backoff", 0.001)
    kw.setdefault("concurrency", 8)
    return OpenAIJudge(model, base_url=url, api_key=KEY, **kw)


def _items(n: int, tag: str = "", turns: int = 1) -> list[AnswerItem]:
    """Items whose true quality cycles through 1..10 (turn t of item i: q = 1 + (i + t) % 10)."""
    return [
        AnswerItem(
            f"s{i}",
            tuple((f"Question {t} about picture {i}?", f"q{1 + (i + t) % 10} {tag}answer") for t in range(turns)),
            image=f"picture {i}",
            image_id=f"sha-{i}",
            reference=f"q{1 + (i * 3) % 10} reference",
        )
        for i in range(n)
    ]


def test_an_always_first_judge_shows_full_position_bias_and_only_ties(server):
    url, _ = server
    runner = JudgeRunner(_judge(url, "first"), JudgmentCache(None))
    pairs = runner.pairwise(_items(8, "x "), _items(8, "y "))
    assert len(pairs) == 8 and all(p.first == "A" and p.second == "A" for p in pairs)
    assert position_bias_rate(pairs) == 1.0
    assert {p.outcome for p in pairs} == {"tie"}
    assert np.nanmean(outcome_matrix(pairs, 1)) == 0.5


def test_judges_with_known_noise_give_the_expected_agreement(server):
    url, _ = server
    items = _items(30)

    def alpha(model: str) -> float:
        js = JudgeRunner(_judge(url, model), JudgmentCache(None), repeats=3).rubric(items)
        m = np.full((3, len(items)), np.nan)
        for j in js:
            m[j.repeat, int(j.item_id[1:])] = j.scores["accuracy"]
        return krippendorff_alpha(m)

    # noise-free: the repeats agree perfectly; Gaussian noise sd 1.5 on true scores spread 1..10
    # (variance 8.25): interval-scale expectation 8.25 / (8.25 + 1.5**2) = 0.79; uniform guessing: ~0
    assert alpha("exact") == 1.0
    assert 0.65 <= alpha("noisy") <= 0.92
    assert abs(alpha("random")) <= 0.2
    # pairwise verdicts: the exact judge agrees with itself across repeats (and has no position bias)
    a, b = _items(12, "x "), [AnswerItem(it.id, ((it.turns[0][0], f"q{5} y answer"),)) for it in _items(12)]
    pairs = JudgeRunner(_judge(url, "exact"), JudgmentCache(None), repeats=3).pairwise(a, b)
    assert fleiss_kappa(verdict_counts(pairs)) == 1.0 and position_bias_rate(pairs) == 0.0
    assert {p.outcome for p in pairs} == {"a", "b", "tie"}
    # a noisy judge comparing clearly better answers (q8) with worse ones (q4): the win rate's interval,
    # over samples and judge repeats, lies above a coin flip
    good = [AnswerItem(it.id, ((it.turns[0][0], "q8 answer"),)) for it in _items(12)]
    poor = [AnswerItem(it.id, ((it.turns[0][0], "q4 answer"),)) for it in _items(12)]
    noisy_pairs = JudgeRunner(_judge(url, "noisy"), JudgmentCache(None), repeats=3).pairwise(good, poor)
    win = hierarchical_interval(outcome_matrix(noisy_pairs, 3))
    assert 0.5 < win.low < win.estimate < win.high <= 1.0 and win.n_repeats == 3
    # the relative score: candidate / reference x 100, from the same scripted grades
    rel = JudgeRunner(_judge(url, "exact"), JudgmentCache(None)).relative(_items(4))
    assert [j.relative for j in rel] == [100.0 * (1 + i % 10) / (1 + (i * 3) % 10) for i in range(4)]
    assert relative_score(rel) == pytest.approx(100.0 * (1 + 2 + 3 + 4) / (1 + 4 + 7 + 10))


def test_malformed_replies_are_counted_as_parse_failures(server):
    url, _ = server
    runner = JudgeRunner(_judge(url, "malformed"), JudgmentCache(None))
    js = runner.rubric(_items(10, turns=2))  # per turn: 20 judgments, odd true scores are malformed
    bad = [j for j in js if j.failure]
    assert len(js) == 20 and len(bad) == 10 == runner.parse_failures
    assert all(j.scores is None and j.failure.startswith("parse:") for j in bad)
    assert parse_failure_rate(runner.parse_failures, runner.judgments) == 0.5
    assert [j.turn for j in js[:2]] == [0, 1]


def test_429_then_success_is_retried_and_a_429_storm_is_counted_not_scored(server):
    url, state = server
    cache = JudgmentCache(None)
    before = state.requests["flaky"]
    js = JudgeRunner(_judge(url, "flaky"), cache).rubric(_items(5))
    assert all(j.scores for j in js) and cache.stats.retries == 5 and cache.stats.calls == 5
    assert state.requests["flaky"] - before == 10  # each asked twice: a 429, then the reply
    assert cache.stats.prompt_tokens > 0 and cache.stats.completion_tokens == 60
    storm_cache = JudgmentCache(None)
    slept: list[float] = []
    runner = JudgeRunner(_judge(url, "storm", max_retries=2, backoff=0.01, sleep=slept.append), storm_cache)
    js = runner.rubric(_items(3))
    assert all(j.scores is None and j.failure.startswith("call: RateLimitError") for j in js)
    assert runner.call_failures == 3 and storm_cache.stats.failed_calls == 3 and len(storm_cache) == 0
    assert storm_cache.stats.retries == 6 and sorted(slept) == [0.01] * 3 + [0.02] * 3  # exponential backoff


def test_concurrency_is_bounded_and_timeouts_are_retried_then_counted(server):
    url, state = server
    runner = JudgeRunner(_judge(url, "slow", concurrency=3), JudgmentCache(None))
    js = runner.rubric(_items(12))
    assert all(j.scores for j in js) and state.max_in_flight == 3
    cache = JudgmentCache(None)
    runner = JudgeRunner(_judge(url, "hang", timeout=0.3, max_retries=1, concurrency=2), cache)
    js = runner.rubric(_items(2))
    assert all(j.failure and "APITimeoutError after 2 attempts" in j.failure for j in js)
    assert cache.stats.failed_calls == 2 and cache.stats.retries == 2 and runner.call_failures == 2
    prov = runner.provenance()
    assert prov["templates"] == {"rubric-v1": RUBRIC.sha256} and prov["judge"]["model"] == "hang"
    assert prov["judge"]["sampling"]["temperature"] == 0.0 and prov["failed_calls"] == 2


def test_bad_endpoint_key_or_model_is_a_one_line_user_error(server, monkeypatch):
    url, _ = server
    monkeypatch.setenv("MMGPT_EVAL_JUDGE_BASE_URL", url)  # endpoint and key from the environment
    monkeypatch.setenv("MMGPT_EVAL_JUDGE_API_KEY", KEY)
    assert OpenAIJudge("exact").identity()["base_url"] == url
    monkeypatch.setenv("MMGPT_EVAL_JUDGE_API_KEY", "wrong")
    with pytest.raises(UserError, match="API key was refused"):
        OpenAIJudge("exact").check()
    with pytest.raises(UserError, match="API key was refused"):
        OpenAIJudge("exact", base_url=url, api_key="wrong").check()
    with pytest.raises(UserError, match="unknown model 'gpt-7'; it serves: ") as e:
        _judge(url, "gpt-7").check()
    assert "\n" not in str(e.value)
    nolist = url.replace("/v1", "/nolist/v1")  # no model list: the test request finds out
    assert _judge(nolist, "exact").identity()["served"] == {
        "listed_id": None,
        "owned_by": None,
        "root": None,
        "reply_model": "exact",
        "system_fingerprint": None,
    }
    with pytest.raises(UserError, match=r"unknown model 'gpt-7' \(404\)"):
        _judge(nolist, "gpt-7").check()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{free.getsockname()[1]}/v1"
    free.close()
    with pytest.raises(UserError, match="unreachable"):
        OpenAIJudge("exact", base_url=dead, api_key=KEY, timeout=5).check()


def test_the_cache_judges_only_what_changed(server, tmp_path):
    url, state = server
    path = tmp_path / "judgments.jsonl"
    items = _items(6, turns=2)

    def run(items, cache=None):
        cache = cache or JudgmentCache(path)
        before = state.requests["exact"]
        judge = _judge(url, "exact")
        js = JudgeRunner(judge, cache, repeats=2).rubric(items)
        assert sum(judge.reply_models.values()) == state.requests["exact"] - before
        run.reply_models = judge.reply_models
        return js, state.requests["exact"] - before, cache

    first, calls, cache = run(items)
    assert calls == 24 == cache.stats.calls and cache.stats.hits == 0
    again, calls, cache = run(items)
    assert calls == 0 == cache.stats.calls and cache.stats.hits == 24
    assert [j.scores for j in again] == [j.scores for j in first]
    # one answer edited (item 2, turn 1): that turn, 2 repeats; its turn 0 is unchanged
    edited = list(items)
    edited[2] = AnswerItem("s2", (items[2].turns[0], (items[2].turns[1][0], "q9 edited")), "picture 2", "sha-2")
    js, calls, _ = run(edited)
    assert calls == 2 and [j.scores["accuracy"] for j in js if j.item_id == "s2" and j.turn == 1] == [9, 9]
    # per dimension and per conversation; a conversation's interval over its repeats
    assert dimension_means(first)["accuracy"] == pytest.approx(
        np.mean([1 + (i + t) % 10 for i in range(6) for t in (0, 1)])
    )
    ids, m = score_matrix(first, "accuracy", 2)
    assert ids[0] == "s0" and m[0].tolist() == [1.5, 1.5] and m.shape == (6, 2)
    ci = score_difference_interval(m, np.full((6, 2), 5.0))
    assert ci.low <= ci.estimate <= ci.high and ci.estimate == pytest.approx(m.mean() - 5)
    # the same caption for another image is another judge input
    recaptured = [AnswerItem(it.id, it.turns, it.image, it.image_id + "-new") for it in items[:1]]
    assert run(recaptured)[1] == 4
    # the server now reports another model behind the same name: every judgment is asked again
    state.reply_model["exact"] = "exact-2026-12"
    try:
        js, calls, _ = run(items)
    finally:
        del state.reply_model["exact"]
    assert calls == 24 and run.reply_models == {"exact-2026-12": 24}
    assert _judge(url, "exact").identity()["served"]["reply_model"] == "exact"


@pytest.mark.slow
def test_a_local_causal_lm_judge_is_counted_not_invented(tmp_path):
    judge = LocalLMJudge("tiny-lm", device="cpu", max_new_tokens=8)
    assert judge.identity()["kind"] == "local-lm" and judge.identity()["model"]["family"] == "causal-lm"
    runner = JudgeRunner(judge, JudgmentCache(None), repeats=2)
    js = runner.rubric(_items(2))
    pairs = runner.pairwise(_items(2, "x "), _items(2, "y "))
    assert len(js) == 4 and len(pairs) == 4 and runner.judgments == 12
    # random weights write no SCORES / VERDICT line: every judgment is a counted failure, none a score
    assert runner.parse_failures == 12 and all(j.scores is None for j in js)
    assert all(p.outcome is None for p in pairs)
    assert js[0].reply == js[1].reply  # greedy: the repeats agree
    # the same weights as a Hugging Face model folder: the same replies
    judge.loaded.model.save_pretrained(tmp_path / "judge-lm")
    judge.loaded.tokenizer.save_pretrained(tmp_path / "judge-lm")
    folder = LocalLMJudge(str(tmp_path / "judge-lm"), device="cpu", max_new_tokens=8)
    again = JudgeRunner(folder, JudgmentCache(None), repeats=2).rubric(_items(2))
    assert [j.reply for j in again] == [j.reply for j in js]
    assert folder.identity()["model"]["lm"] == str(tmp_path / "judge-lm")
