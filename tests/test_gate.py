"""Tests for mmgpt_eval.gate: policy parsing, the decision rule, exit codes and reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmgpt_eval.errors import UserError
from mmgpt_eval.gate import (
    EXIT_ERROR,
    EXIT_PASS,
    EXIT_REGRESSION,
    GatePolicy,
    MetricSamples,
    Rule,
    evaluate_gate,
    load_policy,
    parse_policy,
    to_junit_xml,
    to_markdown,
)

SPEC_POLICY = """\
[defaults]
confidence = 0.95          # one-sided confidence for non-inferiority
min_samples = 50
margin = 1.0               # absolute, in the metric's own units

[[rule]]
task = "easyvqa"
metric = "accuracy"
direction = "higher"
margin = 1.0
confidence = 0.95
min_samples = 100
required = true

[[rule]]
task = "counting"
metric = "mae"
direction = "lower"
margin_relative = 0.02
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gate.toml"
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------------------ policy parsing


def test_load_policy_spec_example(tmp_path):
    path = _write(tmp_path, SPEC_POLICY)
    pol = load_policy(path)
    assert pol.source == str(path) and pol.n_resamples == 10000 and pol.seed == 0
    r1, r2 = pol.rules
    assert r1 == Rule(1, "easyvqa", "accuracy", "higher", 0.95, 100, True, margin=1.0)
    assert r2.direction == "lower" and r2.margin is None and r2.margin_relative == 0.02
    assert r2.min_samples == 50 and r2.confidence == 0.95 and r2.required is True
    assert r2.margin_for(4.0) == pytest.approx(0.08)


def test_policy_builtin_defaults():
    pol = parse_policy({"rule": [{"task": "t", "metric": "m", "direction": "higher"}]})
    (r,) = pol.rules
    assert (r.confidence, r.min_samples, r.margin, r.margin_relative, r.required) == (0.95, 50, 0.0, None, True)
    pol2 = parse_policy(
        {
            "defaults": {"margin_relative": 0.05, "n_resamples": 500, "seed": 3, "required": False},
            "rule": [
                {"task": "t", "metric": "m", "direction": "lower"},
                {"task": "t", "metric": "n", "direction": "lower", "margin": 2},
            ],
        }
    )
    assert pol2.rules[0].margin_relative == 0.05 and pol2.rules[0].margin is None
    assert pol2.rules[1].margin == 2.0 and pol2.rules[1].margin_relative is None
    assert pol2.n_resamples == 500 and pol2.seed == 3 and pol2.rules[0].required is False


RULE_HEAD = '[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\n'


@pytest.mark.parametrize(
    "body,pattern",
    [
        (RULE_HEAD + 'direction = "higher"\nmargn = 1.0\n', r"#1 \(easyvqa/accuracy\): unknown key 'margn'"),
        (RULE_HEAD + 'direction = "higher"\nmargin = 1.0\nmargin_relative = 0.02\n', "both margin and margin_relative"),
        (RULE_HEAD + 'direction = "higher"\nmargin = -1.0\n', "margin must be a non-negative number"),
        (RULE_HEAD + 'direction = "higher"\nmargin_relative = -0.1\n', "margin_relative must be a non-negative"),
        (
            RULE_HEAD + 'direction = "higher"\nconfidence = 0.5\n',
            "confidence must be a number strictly between 0.5 and 1",
        ),
        (RULE_HEAD + 'direction = "higher"\nconfidence = 1.0\n', "confidence must be"),
        (RULE_HEAD + 'direction = "higher"\nconfidence = 95\n', "confidence must be"),
        (RULE_HEAD + 'direction = "up"\n', 'direction must be "higher" or "lower", got \'up\''),
        (RULE_HEAD, "missing required key 'direction'"),
        (RULE_HEAD + 'direction = "higher"\nmin_samples = 0\n', "min_samples must be an integer >= 1"),
        (RULE_HEAD + 'direction = "higher"\nrequired = "yes"\n', "required must be true or false"),
        ('[[rule]]\ntask = ""\nmetric = "m"\ndirection = "higher"\n', "task must be a non-empty string"),
        (
            "[defaults]\nconfidense = 0.9\n" + RULE_HEAD + 'direction = "higher"\n',
            r"\[defaults\]: unknown key 'confidense'",
        ),
        (
            "[defaults]\nmargin = 1\nmargin_relative = 0.1\n" + RULE_HEAD + 'direction = "higher"\n',
            r"\[defaults\]: both margin",
        ),
        (
            "[defaults]\nn_resamples = 10\n" + RULE_HEAD + 'direction = "higher"\n',
            "n_resamples must be an integer >= 100",
        ),
        ("[defaults]\nconfidence = 0.95\n", "no \\[\\[rule\\]\\] tables"),
        ("rules = 1\n" + RULE_HEAD + 'direction = "higher"\n', "policy: unknown key 'rules'"),
        (
            RULE_HEAD + 'direction = "higher"\n' + RULE_HEAD + 'direction = "lower"\n',
            "#2 .*duplicate rule for easyvqa/accuracy \\(already rule #1\\)",
        ),
    ],
)
def test_policy_errors_name_file_and_rule(tmp_path, body, pattern):
    path = _write(tmp_path, body)
    with pytest.raises(UserError, match=pattern) as ei:
        load_policy(path)
    assert str(ei.value).startswith(str(path))


def test_policy_error_points_at_rule_line(tmp_path):
    text = SPEC_POLICY + '\n[[rule]]\ntask = "x"\nmetric = "y"\ndirection = "sideways"\n'
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as ei:
        load_policy(path)
    line = text.splitlines().index("[[rule]]", 20) + 1
    assert ei.value.line == line
    assert str(ei.value).startswith(f"{path}:{line}: [[rule]] #3 (x/y)")


def test_policy_missing_or_malformed_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_policy(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="malformed TOML"):
        load_policy(_write(tmp_path, "[[rule]\n"))


# ------------------------------------------------------------------------------ decision rule

N = 400


def _binary(p: float, n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(n) < p).astype(float)


def _ids(n: int = N) -> list[str]:
    return [f"q{i:05d}" for i in range(n)]


class Store:
    """A fetch callable backed by a dict ``{(task, metric, which): MetricSamples | tuple}``."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str, str], Any] = {}
        self.calls: list[tuple[str, str, str]] = []

    def put(self, task: str, metric: str, baseline: Any, candidate: Any) -> None:
        self.data[(task, metric, "baseline")] = baseline
        self.data[(task, metric, "candidate")] = candidate

    def __call__(self, task: str, metric: str, which: str) -> Any:
        self.calls.append((task, metric, which))
        return self.data[(task, metric, which)]


def _policy(*rules: dict[str, Any], **defaults: Any) -> GatePolicy:
    defaults.setdefault("n_resamples", 2000)
    return parse_policy({"defaults": defaults, "rule": list(rules)})


def _rule(task: str = "easyvqa", metric: str = "accuracy", direction: str = "higher", **kw: Any) -> dict[str, Any]:
    return {"task": task, "metric": metric, "direction": direction, **kw}


def test_clearly_worse_candidate_fails():
    base = _binary(0.8)
    cand = base.copy()
    cand[np.flatnonzero(base == 1)[:100]] = 0.0  # 100 of 400 newly wrong: -25 points
    store = Store()
    store.put(
        "easyvqa",
        "accuracy",
        MetricSamples(_ids(), base, "binary", scale=100.0),
        MetricSamples(_ids(), cand, "binary", scale=100.0),
    )
    res = evaluate_gate(_policy(_rule(margin=1.0)), store)
    assert res.exit_code == EXIT_REGRESSION == 1 and res.verdict == "regression"
    (r,) = res.results
    assert r.status == "regression" and r.test == "mcnemar_exact"
    assert r.delta == pytest.approx(-25.0) and r.baseline == pytest.approx(100 * base.mean())
    assert r.ci_high < -1.0 and r.bound == r.ci_high and r.margin == 1.0 and r.n == N
    assert r.p_value < 1e-20


def test_identical_candidate_passes_even_with_zero_margin():
    base = _binary(0.6)
    store = Store()
    store.put("easyvqa", "accuracy", (_ids(), base, "binary", None), (_ids(), base.copy(), "binary", None))
    res = evaluate_gate(_policy(_rule(margin=0.0)), store)
    assert res.exit_code == EXIT_PASS == 0
    (r,) = res.results
    assert r.status == "pass" and r.delta == 0.0 and (r.ci_low, r.ci_high) == (0.0, 0.0)
    assert r.note == "within margin" and r.p_value == 1.0


def test_slightly_worse_within_margin_passes():
    rng = np.random.default_rng(1)
    base = rng.random(N)
    cand = base - 0.002 + rng.normal(0, 0.01, N)  # truly worse by 0.002, margin 0.01
    store = Store()
    store.put("t", "score", (_ids(), base, "continuous", None), (_ids(), cand, "continuous", None))
    res = evaluate_gate(_policy(_rule("t", "score", margin=0.01)), store)
    (r,) = res.results
    assert res.exit_code == 0 and r.status == "pass"
    assert r.ci_high < 0  # the candidate *is* worse with confidence ...
    assert r.ci_low > -0.01 and r.note == "within margin"  # ... but provably by less than the margin


def test_noisy_slightly_worse_straddling_margin_passes_as_inconclusive():
    rng = np.random.default_rng(2)
    base = rng.random(100)
    signs = np.tile([1.0, -1.0], 50)
    cand = base - 0.05 + 0.3 * signs  # mean delta exactly -margin, very noisy
    store = Store()
    store.put("t", "score", (_ids(100), base, "continuous", None), (_ids(100), cand, "continuous", None))
    res = evaluate_gate(_policy(_rule("t", "score", margin=0.05)), store)
    (r,) = res.results
    assert r.ci_low < -0.05 < r.ci_high
    assert r.status == "pass" and r.note == "inconclusive" and res.exit_code == 0


def test_lower_is_better_direction():
    rng = np.random.default_rng(3)
    base = rng.exponential(2.0, N)  # e.g. absolute error per sample
    store = Store()
    store.put(
        "count",
        "mae",
        (_ids(), base, "continuous", None),
        (_ids(), base + 1.0 + rng.normal(0, 0.1, N), "continuous", None),
    )
    store.put("count", "mae2", (_ids(), base, "continuous", None), (_ids(), base * 0.5, "continuous", None))
    res = evaluate_gate(
        _policy(_rule("count", "mae", "lower", margin=0.2), _rule("count", "mae2", "lower", margin=0.2)), store
    )
    worse, better = res.results
    assert worse.status == "regression" and worse.ci_low > 0.2 and worse.bound == pytest.approx(-worse.ci_low)
    assert better.status == "pass" and better.note == "improved"
    assert res.exit_code == 1


def test_relative_margin_uses_baseline_value():
    base = np.full(N, 0.5)
    cand = np.full(N, 0.5)
    cand[:40] = 0.3  # mean drops by 0.02 = 4 % of the baseline 0.5
    store = Store()
    store.put("t", "m", (_ids(), base, "continuous", 0.5), (_ids(), cand, "continuous", 0.48))
    ok = evaluate_gate(_policy(_rule("t", "m", margin_relative=0.05)), store).results[0]
    bad = evaluate_gate(_policy(_rule("t", "m", margin_relative=0.01)), store).results[0]
    assert ok.margin == pytest.approx(0.025) and ok.status == "pass"
    assert bad.margin == pytest.approx(0.005) and bad.status == "regression"
    assert ok.baseline_corpus_value == 0.5 and ok.candidate_corpus_value == 0.48


def test_corpus_metric_and_corpus_value_check():
    rng = np.random.default_rng(4)
    base = rng.gamma(2.0, 0.5, N)  # per-image CIDEr contributions
    cand = base + rng.normal(0, 0.05, N)
    store = Store()
    store.put(
        "coco", "cider", (_ids(), base, "corpus", float(base.mean())), (_ids(), cand, "corpus", float(cand.mean()))
    )
    store.put("coco", "cider_bad", (_ids(), base, "corpus", 100 * float(base.mean())), (_ids(), cand, "corpus", None))
    res = evaluate_gate(_policy(_rule("coco", "cider", margin=0.05), _rule("coco", "cider_bad", margin=0.05)), store)
    good, bad = res.results
    assert good.status == "pass" and good.test == "paired_permutation" and "sign_test" in good.secondary
    assert bad.status == "error" and "per-sample values average to" in bad.message
    assert res.exit_code == EXIT_ERROR


def test_sample_order_does_not_matter():
    rng = np.random.default_rng(5)
    base = rng.random(N)
    cand = base + rng.normal(-0.01, 0.05, N)
    perm = rng.permutation(N)
    ids = np.array(_ids())
    s1, s2 = Store(), Store()
    s1.put("t", "m", (list(ids), base, "continuous", None), (list(ids), cand, "continuous", None))
    s2.put("t", "m", (list(ids[perm]), base[perm], "continuous", None), (list(ids), cand, "continuous", None))
    r1 = evaluate_gate(_policy(_rule("t", "m")), s1).results[0]
    r2 = evaluate_gate(_policy(_rule("t", "m")), s2).results[0]
    assert (r1.delta, r1.ci_low, r1.ci_high, r1.status) == pytest.approx((r2.delta, r2.ci_low, r2.ci_high, r2.status))


# ------------------------------------------------------------------------------ errors -> exit 2


def test_missing_metric_required_is_error_optional_is_skipped():
    base = _binary(0.7)
    store = Store()
    store.put("easyvqa", "accuracy", (_ids(), base, "binary", None), (_ids(), base, "binary", None))
    del store.data[("easyvqa", "accuracy", "candidate")]
    res = evaluate_gate(_policy(_rule(required=True)), store)
    assert res.exit_code == EXIT_ERROR == 2
    assert "candidate run has no metric 'accuracy' for task 'easyvqa'" in res.results[0].message
    res2 = evaluate_gate(_policy(_rule(required=False)), store)
    assert res2.exit_code == 0 and res2.results[0].status == "skipped"


def test_too_few_samples_is_error():
    base = _binary(0.7, n=30)
    store = Store()
    store.put("easyvqa", "accuracy", (_ids(30), base, "binary", None), (_ids(30), base, "binary", None))
    res = evaluate_gate(_policy(_rule(min_samples=50)), store)
    assert res.exit_code == 2
    assert "only 30 paired sample(s)" in res.results[0].message and "min_samples = 50" in res.results[0].message


def test_mismatched_ids_error_unless_intersect():
    base = _binary(0.7, n=120, seed=1)
    cand = _binary(0.7, n=120, seed=2)
    b_ids = [f"s{i}" for i in range(120)]
    c_ids = [f"s{i}" for i in range(10, 130)]  # 10 only in baseline, 10 only in candidate
    store = Store()
    store.put("easyvqa", "accuracy", (b_ids, base, "binary", None), (c_ids, cand, "binary", None))
    res = evaluate_gate(_policy(_rule(min_samples=50)), store)
    assert res.exit_code == 2
    msg = res.results[0].message
    assert "not evaluated on the same samples" in msg and "10 sample id(s) only in baseline" in msg
    res2 = evaluate_gate(_policy(_rule(min_samples=50)), store, intersect=True)
    (r,) = res2.results
    assert r.status in ("pass", "regression") and res2.exit_code in (0, 1)
    assert (r.n, r.n_baseline, r.n_candidate, r.n_only_baseline, r.n_only_candidate) == (110, 120, 120, 10, 10)
    assert "110 common samples" in r.message and res2.to_dict()["intersect"] is True
    # The intersection too small for min_samples is still an error.
    assert evaluate_gate(_policy(_rule(min_samples=111)), store, intersect=True).exit_code == 2


@pytest.mark.parametrize(
    "baseline,candidate,pattern",
    [
        (
            (["a", "b"], [1.0, float("nan")], "continuous", None),
            (["a", "b"], [1.0, 1.0], "continuous", None),
            "sample 'b' is nan",
        ),
        ((["a", "a"], [1.0, 0.0], "binary", None), (["a", "b"], [1.0, 1.0], "binary", None), "duplicate sample id 'a'"),
        ((["a", "b"], [1.0, 0.0], "binary", None), (["a", "b"], [1.0, 0.0], "continuous", None), "kind differs"),
        ((["a", "b"], [1.0, 0.5], "binary", None), (["a", "b"], [1.0, 0.0], "binary", None), "0 or 1"),
        ((["a", "b"], [1.0], "binary", None), (["a", "b"], [1.0, 0.0], "binary", None), "2 ids but 1 values"),
        ((["a", "b"], [1.0, 0.0], "ordinal", None), (["a", "b"], [1.0, 0.0], "ordinal", None), "unknown metric kind"),
    ],
)
def test_bad_data_is_error_naming_metric(baseline, candidate, pattern):
    store = Store()
    store.put("t", "m", baseline, candidate)
    res = evaluate_gate(_policy(_rule("t", "m", min_samples=1)), store)
    assert res.exit_code == 2
    assert res.results[0].rule.label == "t/m" and res.results[0].status == "error"
    assert pattern in res.results[0].message


def test_fetch_user_error_is_rule_error_and_other_rules_still_run():
    base = _binary(0.8)

    def fetch(task: str, metric: str, which: str):
        if metric == "broken":
            raise UserError("results.json: malformed", None)
        cand = base.copy()
        cand[np.flatnonzero(base == 1)[:100]] = 0
        return (_ids(), base if which == "baseline" else cand, "binary", None)

    res = evaluate_gate(_policy(_rule(metric="broken"), _rule(metric="accuracy")), fetch)
    assert [r.status for r in res.results] == ["error", "regression"]
    assert res.exit_code == 2  # errors take precedence over regressions
    assert res.count("regression") == 1 and res.verdict == "error"


# ------------------------------------------------------------------------------ reports


def _mixed_result():
    base = _binary(0.8)
    worse = base.copy()
    worse[np.flatnonzero(base == 1)[:100]] = 0
    store = Store()
    weird = 'vqa|<b>&"\x01'
    store.put(weird, "accuracy", (_ids(), base, "binary", None), (_ids(), base, "binary", None))
    store.put("easyvqa", "accuracy", (_ids(), base, "binary", None), (_ids(), worse, "binary", None))
    store.put("gone", "accuracy", (_ids(), base, "binary", None), (_ids(), base, "binary", None))
    del store.data[("gone", "accuracy", "baseline")]
    store.put("opt", "x", (_ids(), base, "binary", None), (_ids(), base, "binary", None))
    del store.data[("opt", "x", "candidate")]
    pol = _policy(
        _rule(weird, "accuracy", margin=0.01),
        _rule("easyvqa", "accuracy", margin=0.01),
        _rule("gone", "accuracy"),
        _rule("opt", "x", required=False),
    )
    return evaluate_gate(pol, store)


def test_markdown_summary():
    res = _mixed_result()
    md = to_markdown(res)
    assert md.splitlines()[0].startswith("### ⚠️ **Gate: ERROR**")
    assert "1 pass, 1 regression, 1 error, 1 skipped" in md and "exit code 2" in md
    assert "| Task | Metric | Baseline | Candidate |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 5  # header + 4 rules
    assert all(row.count("|") - row.count("\\|") == 9 for row in rows)  # escaped pipe in the task name
    assert "❌ regression" in md and "⏭️ skipped" in md and "Δ < −0.01" in md.replace("\\<", "<")
    assert "baseline run has no metric" in md

    base = _binary(0.7)
    store = Store()
    store.put("easyvqa", "accuracy", (_ids(), base, "binary", None), (_ids(), base, "binary", None))
    ok = evaluate_gate(_policy(_rule()), store)
    assert to_markdown(ok).startswith("### ✅ **Gate: PASS**")


def test_junit_xml_parses_with_right_counts():
    res = _mixed_result()
    xml = to_junit_xml(res)
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuite"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("4", "1", "1", "1")
    cases = root.findall("testcase")
    assert len(cases) == 4
    assert len(root.findall("testcase/failure")) == 1 and len(root.findall("testcase/error")) == 1
    assert len(root.findall("testcase/skipped")) == 1
    assert cases[0].get("name") == 'vqa|<b>&"\ufffd/accuracy'  # markup escaped, control char replaced
    assert cases[1].find("failure").get("type") == "regression"
    props = {p.get("name"): p.get("value") for p in root.find("properties")}
    assert props["verdict"] == "error" and props["exit_code"] == "2"


def test_to_dict_is_json_serialisable():
    res = _mixed_result()
    d = json.loads(json.dumps(res.to_dict()))
    assert d["verdict"] == "error" and d["exit_code"] == 2
    assert d["counts"] == {"pass": 1, "warn": 0, "regression": 1, "error": 1, "skipped": 1}
    assert [r["status"] for r in d["rules"]] == ["pass", "regression", "error", "skipped"]
    assert d["rules"][1]["task"] == "easyvqa" and d["policy"]["n_resamples"] == 2000


# ------------------------------------------------------------------------------ inconclusive policy


def test_policy_inconclusive_key_defaults_and_overrides():
    pol = parse_policy({"defaults": {"inconclusive": "warn"}, "rule": [_rule(), _rule("t", "x", inconclusive="fail")]})
    assert [r.inconclusive for r in pol.rules] == ["warn", "fail"]
    assert parse_policy({"rule": [_rule()]}).rules[0].inconclusive == "pass"  # today's behaviour


@pytest.mark.parametrize("where", ["defaults", "rule"])
@pytest.mark.parametrize("bad", ["error", "FAIL", True, 1])
def test_policy_inconclusive_bad_value_is_one_line_error(tmp_path, where, bad):
    val = json.dumps(bad) if not isinstance(bad, bool) else str(bad).lower()
    body = (
        f'[defaults]\ninconclusive = {val}\n\n[[rule]]\ntask = "t"\nmetric = "m"\ndirection = "higher"\n'
        if where == "defaults"
        else f'[[rule]]\ntask = "t"\nmetric = "m"\ndirection = "higher"\ninconclusive = {val}\n'
    )
    with pytest.raises(UserError) as e:
        load_policy(_write(tmp_path, body))
    msg = str(e.value)
    assert "\n" not in msg and "inconclusive must be" in msg and '"warn"' in msg and "gate.toml" in msg


def _inconclusive_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Counting-like binary runs: -6 points on 150 samples, CI roughly [-11, -1], margin 5 -> crosses it."""
    from fakeruns import make_run

    base = [1.0] * 90 + [0.0] * 60  # 150 samples
    cand = list(base)
    for i in range(12):  # 12 newly wrong ...
        cand[i] = 0.0
    for i in range(3):  # ... 3 newly right: net -9 of 150 = -6 points
        cand[90 + i] = 1.0
    return (
        make_run(tmp_path / "base", {"accuracy": base}, task="counting"),
        make_run(tmp_path / "cand", {"accuracy": cand}, task="counting"),
    )


@pytest.mark.parametrize(
    "action,status,exit_code", [("pass", "pass", 0), ("warn", "warn", 0), ("fail", "regression", 1)]
)
def test_inconclusive_drop_three_behaviours(tmp_path, action, status, exit_code):
    from mmgpt_eval.cli import main

    b, c = _inconclusive_runs(tmp_path)
    pol = tmp_path / "gate.toml"
    pol.write_text(
        f'[defaults]\nmin_samples = 50\nn_resamples = 2000\ninconclusive = "{action}"\n\n'
        '[[rule]]\ntask = "counting"\nmetric = "accuracy"\ndirection = "higher"\nmargin = 5.0\n'
    )
    out = tmp_path / "out"
    out.mkdir()
    rc = main(
        [
            "gate",
            "--baseline",
            str(b),
            "--candidate",
            str(c),
            "--policy",
            str(pol),
            "--markdown",
            str(out / "g.md"),
            "--junit",
            str(out / "g.xml"),
            "--json",
            str(out / "g.json"),
        ]
    )
    assert rc == exit_code
    d = json.loads((out / "g.json").read_text())
    (r,) = d["rules"]
    assert r["ci_low"] < -5.0 <= r["ci_high"] and r["delta"] == pytest.approx(-6.0)  # crosses the margin
    assert r["inconclusive"] is True and r["inconclusive_action"] == action and r["status"] == status
    assert d["inconclusive"] == 1 and d["exit_code"] == exit_code
    md = (out / "g.md").read_text()
    root = ET.fromstring((out / "g.xml").read_bytes())
    case = root.find("testcase")
    if action == "pass":
        assert "✅ pass (inconclusive)" in md and "passes by policy" in md and md.startswith("### ✅ **Gate: PASS**")
        assert case.find("failure") is None and d["counts"]["warn"] == 0
    elif action == "warn":
        assert "⚠️ warn (inconclusive (warning by policy))" in md and "PASS with warnings" in md
        assert "1 warn" in md and "exit code 0" in md
        assert case.find("failure") is None and case.find("system-out").text.startswith("WARNING: ")
        assert {p.get("name"): p.get("value") for p in root.find("properties")}["warnings"] == "1"
    else:
        assert "❌ regression (inconclusive (fails by policy))" in md and "fails by policy (exit code 1)" in md
        assert md.startswith("### ❌ **Gate: REGRESSION**")
        assert case.find("failure").get("type") == "inconclusive" and root.get("failures") == "1"


# ------------------------------------------------------------------------------ gate init (no model needed)


def test_gate_init_refuses_existing_baseline_and_mixed_flags(tmp_path, capsys):
    from mmgpt_eval.cli import main

    out = tmp_path / "ci" / "mmgpt-baseline"
    out.mkdir(parents=True)
    (out / "results.json").write_text("{}")
    assert main(["gate", "init", "--model", "m", "--tasks", "t", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert main(["gate", "init", "--tasks", "t", "--output", str(tmp_path / "x"), "--baseline", "b"]) == 2
    assert "not of `gate init`" in capsys.readouterr().err
    assert main(["gate", "--model", "m", "--baseline", "b", "--candidate", "c", "--policy", "p"]) == 2
    assert "belongs to `mmgpt-eval gate init`" in capsys.readouterr().err
    assert main(["gate", "--baseline", "b"]) == 2
    assert "--candidate, --policy" in capsys.readouterr().err


def test_starter_policy_parses(tmp_path):
    from fakeruns import make_run
    from mmgpt_eval.cli.gate import starter_policy
    from mmgpt_eval.results import RunResults

    run = make_run(tmp_path / "r", {"accuracy": [1.0, 0.0] * 40}, task="t1")
    text = starter_policy(RunResults.load(run), limit=80)
    pol = parse_policy(__import__("tomllib").loads(text))
    (r,) = pol.rules
    assert (r.task, r.metric, r.direction, r.margin, r.inconclusive, r.min_samples) == (
        "t1",
        "accuracy",
        "higher",
        5.0,
        "warn",
        50,
    )
