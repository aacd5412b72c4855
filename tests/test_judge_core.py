"""The judge's library core without a server: strict parsing, template hashes, agreement statistics
against published worked examples, the two-level bootstrap's coverage by simulation, the cache's torn
last line, and kill -9 mid-judging then resume (nothing lost, nothing judged twice)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mmgpt_eval.judge.backends import CallableJudge
from mmgpt_eval.judge.cache import JudgmentCache
from mmgpt_eval.judge.modes import AnswerItem, JudgeRunner, PairJudgment
from mmgpt_eval.judge.parse import ParseFailure, parse_scores, parse_verdict
from mmgpt_eval.judge.prompts import PAIRWISE, RELATIVE, RUBRIC, Template, render_rubric
from mmgpt_eval.judge.reliability import (
    fleiss_kappa,
    hierarchical_interval,
    krippendorff_alpha,
    outcome_matrix,
    parse_failure_rate,
    position_bias_rate,
    score_difference_interval,
    verdict_counts,
)

DIMS = ("helpfulness", "accuracy")


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Good answer.\nSCORES: helpfulness=7; accuracy=8", {"helpfulness": 7, "accuracy": 8}),
        ("SCORES: accuracy=10;helpfulness=1\n\n", {"helpfulness": 1, "accuracy": 10}),
        ("SCORES: helpfulness=7; accuracy=8\nThanks!", "not a SCORES"),  # not the last line
        ("SCORES: helpfulness=7", "expected scores for"),  # a dimension missing
        ("SCORES: helpfulness=7; accuracy=8; detail=3", "expected scores for"),  # one too many
        ("SCORES: helpfulness=11; accuracy=8", "outside 1-10"),
        ("SCORES: helpfulness=0; accuracy=8", "outside 1-10"),
        ("SCORES: helpfulness=7.5; accuracy=8", "not name=score"),
        ("SCORES: helpfulness=7; helpfulness=8", "given twice"),
        ("I would rate it 7/10 overall.", "not a SCORES"),
        ("", "empty reply"),
    ],
)
def test_scores_are_read_strictly(reply, expected):
    got = parse_scores(reply, DIMS)
    if isinstance(expected, dict):
        assert got == expected
    else:
        assert isinstance(got, ParseFailure) and expected in got.reason


@pytest.mark.parametrize(
    "reply, expected",
    [("B is better.\nVERDICT: A", "A"), ("VERDICT: tie", "tie"), ("VERDICT: B  ", "B"), ("VERDICT: a", None)],
)
def test_verdicts_are_read_strictly(reply, expected):
    got = parse_verdict(reply)
    assert got == expected if expected else isinstance(got, ParseFailure)
    for bad in ("VERDICT: A or B", "Verdict: A", "A", "VERDICT: A\nok"):
        assert isinstance(parse_verdict(bad), ParseFailure)


def test_templates_are_hashed_and_ask_for_the_line_the_parser_reads():
    hashes = {t.sha256 for t in (RUBRIC, RELATIVE, PAIRWISE)}
    assert len(hashes) == 3 and all(len(h) == 64 for h in hashes)
    edited = Template(RUBRIC.name, RUBRIC.mode, RUBRIC.system + " ", RUBRIC.user, RUBRIC.dimensions)
    assert edited.sha256 != RUBRIC.sha256
    msgs = render_rubric(RUBRIC, "What is shown?", "a red circle", history=[("Hi", "Hello")], image="a red circle")
    assert msgs[1]["content"].endswith("SCORES: helpfulness=<1-10>; accuracy=<1-10>; detail=<1-10>")
    assert "User: Hi\nAssistant: Hello" in msgs[1]["content"]


def test_krippendorff_alpha_matches_krippendorffs_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, values 1-5
    n = np.nan
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha([[1, 2, 3, 4], [1, 2, 3, 4]]) == 1.0
    assert krippendorff_alpha([[1, 1], [1, 1]]) != krippendorff_alpha([[1, 1], [1, 1]])  # NaN: no variation


def test_fleiss_kappa_matches_the_textbook_example():
    # the worked example of Fleiss' kappa on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)
    assert fleiss_kappa([[3, 0, 0], [0, 3, 0], [0, 0, 3]]) == 1.0
    for bad in ([[3, 0], [1, 1]], [3, 0], np.zeros((0, 3))):
        with pytest.raises(ValueError, match="same number"):
            fleiss_kappa(bad)


def test_pair_outcomes_position_bias_and_counts():
    pairs = [
        PairJudgment("x", 0, 0, "A", "B", ("", "")),  # A first, then A shown second: a wins
        PairJudgment("x", 0, 1, "A", "A", ("", "")),  # the first position both times: tie, position-led
        PairJudgment("y", 0, 0, "B", "A", ("", "")),  # b wins
        PairJudgment("y", 0, 1, "tie", "B", ("", "")),  # tie
        PairJudgment("z", 0, 0, None, "A", ("", ""), "parse: x"),
        PairJudgment("z", 0, 1, "B", "A", ("", "")),
    ]
    assert [p.outcome for p in pairs] == ["a", "tie", "b", "tie", None, "b"]
    assert position_bias_rate(pairs) == pytest.approx(1 / 5)
    assert verdict_counts(pairs).tolist() == [[1, 1, 0], [0, 1, 1]]  # z has a failure: left out
    m = outcome_matrix(pairs, 2)
    assert m[0].tolist() == [1.0, 0.5] and np.isnan(m[2, 0]) and m[2, 1] == 0.0
    assert parse_failure_rate(1, 12) == pytest.approx(1 / 12) and np.isnan(parse_failure_rate(0, 0))


def test_the_interval_carries_judge_noise_and_covers_the_true_difference():
    """1,000 simulated comparisons, judges with known noise: the 95% interval of the paired score
    difference covers the true difference in at least 93% of them; and judge noise widens it."""
    rng = np.random.default_rng(26)
    n, r, true_diff = 40, 3, 0.5
    covered, t0 = 0, time.process_time()  # CPU time: the test machine's cores are shared
    for k in range(1000):
        base = rng.normal(5.0, 1.5, n)  # each sample's difficulty
        effect = rng.normal(true_diff, 1.0, n)  # run A's per-sample advantage
        a = (base + effect)[:, None] + rng.normal(0, 1.2, (n, r))  # judge noise per repeat
        b = base[:, None] + rng.normal(0, 1.2, (n, r))
        ci = score_difference_interval(a, b, n_resamples=300, seed=k)
        covered += ci.low <= true_diff <= ci.high
    assert covered >= 930, covered
    assert time.process_time() - t0 < 10
    # with the same sample effects, a noisier judge gives a wider interval
    x = rng.normal(0.5, 1.0, (40, 1))
    calm = hierarchical_interval(x + rng.normal(0, 0.1, (40, 3)))
    noisy = hierarchical_interval(x + rng.normal(0, 3.0, (40, 3)))
    assert noisy.high - noisy.low > 1.5 * (calm.high - calm.low)
    # a failed judgment (NaN) is left out, not scored
    part = hierarchical_interval([[1.0, np.nan], [0.0, 0.0], [1.0, 1.0]])
    assert part.estimate == pytest.approx(2 / 3)


def _scripted(messages):
    text = messages[-1]["content"]
    answer = text.split("[Reply to grade]\n", 1)[1].split("\n\n", 1)[0]
    q = int(answer.split("q", 1)[1].split()[0])
    return f"Fine.\nSCORES: helpfulness={q}; accuracy={q}; detail={q}"


def test_cache_drops_a_torn_last_line_and_judges_nothing_twice(tmp_path):
    items = [AnswerItem(str(i), (("What is it?", f"q{1 + i % 10} a shape"),)) for i in range(6)]
    calls = []
    judge = CallableJudge(lambda m: calls.append(1) or _scripted(m), name="scripted")
    path = tmp_path / "judgments.jsonl"
    JudgeRunner(judge, JudgmentCache(path), repeats=2).rubric(items)
    assert len(calls) == 12 and len(path.read_text().splitlines()) == 12
    with path.open("ab") as f:
        f.write(b'{"key": "abc", "rep')  # a write cut short by a kill
    cache = JudgmentCache(path)
    assert len(cache) == 12 and path.read_bytes().endswith(b"}\n")  # torn bytes cut off
    told: list[int] = []  # what a progress bar is told: only the calls the cache cannot answer
    out = JudgeRunner(judge, cache, repeats=2, on_calls=told.append).rubric(items)
    assert len(calls) == 12 and cache.stats.calls == 0 and cache.stats.hits == 12 and told == []
    JudgeRunner(judge, cache, repeats=3, on_calls=told.append).rubric(items)
    assert told == [6] and len(calls) == 18  # the third repeat of each item: 6 new calls, announced once
    assert [j.scores["accuracy"] for j in out if j.repeat == 0] == [1, 2, 3, 4, 5, 6]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from mmgpt_eval.judge.backends import CallableJudge
    from mmgpt_eval.judge.cache import JudgmentCache
    from mmgpt_eval.judge.modes import AnswerItem, JudgeRunner

    def slow(messages):
        time.sleep(0.02)
        return "ok\\nVERDICT: A"

    a = [AnswerItem(str(i), (("Q%d" % i, "one answer %d" % i),)) for i in range(40)]
    b = [AnswerItem(str(i), (("Q%d" % i, "another answer %d" % i),)) for i in range(40)]
    JudgeRunner(CallableJudge(slow, name="slow", concurrency=2), JudgmentCache(sys.argv[1])).pairwise(a, b)
    """
)


def test_kill_9_mid_judging_then_resume(tmp_path):
    path = tmp_path / "judgments.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not path.exists() or path.read_bytes().count(b"\n") < 15):
            assert proc.poll() is None, "the judging process ended before it was killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    keys_before = [json.loads(x)["key"] for x in path.read_text().splitlines() if x.endswith("}")]
    assert 15 <= len(keys_before) < 80
    asked = []

    def counting(messages):
        asked.append(1)
        return "ok\nVERDICT: A"

    a = [AnswerItem(str(i), ((f"Q{i}", f"one answer {i}"),)) for i in range(40)]
    b = [AnswerItem(str(i), ((f"Q{i}", f"another answer {i}"),)) for i in range(40)]
    cache = JudgmentCache(path)
    pairs = JudgeRunner(CallableJudge(counting, name="slow"), cache).pairwise(a, b)
    assert len(asked) == 80 - len(set(keys_before))  # only what the killed run had not written
    keys = [json.loads(x)["key"] for x in path.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 80  # nothing lost, nothing twice
    assert len(pairs) == 40 and all(p.outcome == "tie" for p in pairs)


def test_inputs_that_cannot_be_judged_are_one_line_user_errors():
    from mmgpt_eval.errors import UserError

    runner = JudgeRunner(CallableJudge(lambda m: "VERDICT: A", name="a"), JudgmentCache(None))
    one = [AnswerItem("1", (("Q", "x"),))]
    with pytest.raises(UserError, match=r"unmatched: \['1', '2'\]"):
        runner.pairwise(one, [AnswerItem("2", (("Q", "y"),))])
    with pytest.raises(UserError, match="asked different questions"):
        runner.pairwise(one, [AnswerItem("1", (("Other Q", "y"),))])
    with pytest.raises(UserError, match="needs a reference answer"):
        runner.relative(one)
    with pytest.raises(UserError, match="repeats must be >= 1"):
        JudgeRunner(CallableJudge(lambda m: "", name="a"), JudgmentCache(None), repeats=0)
    assert runner.judgments == 0  # nothing was judged


def test_an_error_mid_judging_stops_the_calls_and_keeps_what_was_judged(tmp_path):
    from mmgpt_eval.errors import UserError

    asked = []

    def refuses_third(messages):
        asked.append(1)
        if len(asked) == 3:
            raise UserError("judge endpoint: the API key was refused (401)")
        return "VERDICT: tie"

    cache = JudgmentCache(tmp_path / "j.jsonl")
    items = [AnswerItem(str(i), (("Q", f"answer {i}"),)) for i in range(20)]
    with pytest.raises(UserError, match="refused"):
        JudgeRunner(CallableJudge(refuses_third, name="r"), cache).rubric(items)
    # at most the one call already running on the (single) worker follows the refused one
    assert 3 <= len(asked) <= 4 and len(JudgmentCache(tmp_path / "j.jsonl")) == len(asked) - 1
