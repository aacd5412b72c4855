"""Tests for mmgpt_eval.stats: paired bootstrap, McNemar, sign and permutation tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from mmgpt_eval.errors import UserError
from mmgpt_eval.stats import (
    bootstrap_ci,
    compare_metric,
    mcnemar_exact,
    paired_bootstrap,
    paired_permutation_test,
    sign_test,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_is_deterministic_for_a_seed():
    a = _rng(1).random(300)
    b = a + _rng(2).normal(0.02, 0.1, 300)
    r1 = paired_bootstrap(a, b, n_resamples=2000, seed=7)
    r2 = paired_bootstrap(a, b, n_resamples=2000, seed=7)
    r3 = paired_bootstrap(a, b, n_resamples=2000, seed=8)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    np.testing.assert_array_equal(r1.distribution, r2.distribution)
    assert (r1.ci_low, r1.ci_high) != (r3.ci_low, r3.ci_high)
    assert r1.estimate == pytest.approx(np.mean(b) - np.mean(a), abs=1e-12)
    assert r1.n == 300 and r1.n_resamples == 2000 and r1.seed == 7 and r1.method == "percentile"


def test_bootstrap_hand_computed_two_points():
    # Resampling [0, 1] twice: mean 0 (p=1/4), 0.5 (p=1/2), 1 (p=1/4).
    r = bootstrap_ci([0.0, 1.0], n_resamples=20000, confidence=0.95, seed=3)
    assert r.estimate == 0.5
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)
    frac = np.mean(r.distribution == 0.5)
    assert frac == pytest.approx(0.5, abs=0.02)
    assert np.mean(r.distribution == 0.0) == pytest.approx(0.25, abs=0.02)
    # A 40 % interval = 30th..70th percentile, both inside the 0.5 mass.
    r40 = bootstrap_ci([0.0, 1.0], n_resamples=20000, confidence=0.4, seed=3)
    assert (r40.ci_low, r40.ci_high) == (0.5, 0.5)


def test_bootstrap_degenerate_cases():
    one = paired_bootstrap([0.2], [0.7], n_resamples=500)
    assert one.estimate == pytest.approx(0.5)
    assert one.ci_low == pytest.approx(0.5) and one.ci_high == pytest.approx(0.5)
    same = paired_bootstrap(np.arange(50.0), np.arange(50.0), n_resamples=500)
    assert (same.estimate, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    shift = paired_bootstrap(np.arange(50.0), np.arange(50.0) + 2.0, n_resamples=500)
    assert shift.ci_low == pytest.approx(2.0) and shift.ci_high == pytest.approx(2.0)


def test_bootstrap_ci_contains_true_delta():
    rng = _rng(5)
    a = rng.normal(0.0, 1.0, 2000)
    b = a + 0.1 + rng.normal(0.0, 0.5, 2000)  # true delta 0.1
    r = paired_bootstrap(a, b, n_resamples=5000, seed=0)
    assert r.ci_low < 0.1 < r.ci_high
    # The pairing removes the shared N(0, 1) part: the interval width reflects sd 0.5 only.
    assert r.ci_high - r.ci_low == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(2000), rel=0.15)


def test_bootstrap_coverage_sanity():
    # 200 repeated experiments with a known mean; the 95 % percentile interval should cover it
    # roughly 95 % of the time (a little less at n = 40 is normal for the percentile method).
    rng = _rng(11)
    hits = 0
    for rep in range(200):
        x = rng.exponential(1.0, 40) - 1.0 + 0.3  # skewed, true mean 0.3
        r = bootstrap_ci(x, n_resamples=1000, seed=rep)
        hits += r.ci_low <= 0.3 <= r.ci_high
    assert 0.86 <= hits / 200 <= 0.99


def test_bootstrap_matches_scipy_percentile_and_bca():
    rng = _rng(3)
    a = rng.random(400)
    b = a + rng.exponential(0.1, 400) - 0.08

    def stat(x, y, axis):
        return np.mean(y, axis=axis) - np.mean(x, axis=axis)

    for method, sp_method in (("percentile", "percentile"), ("bca", "BCa")):
        ours = paired_bootstrap(a, b, n_resamples=20000, seed=1, method=method)
        ref = sps.bootstrap(
            (a, b), stat, paired=True, vectorized=True, n_resamples=20000, method=sp_method, random_state=2
        ).confidence_interval
        width = ours.ci_high - ours.ci_low
        assert ours.ci_low == pytest.approx(ref.low, abs=0.03 * width)
        assert ours.ci_high == pytest.approx(ref.high, abs=0.03 * width)


def test_bootstrap_quantile_is_one_sided_bound():
    a = _rng(4).random(200)
    b = a + _rng(5).normal(0, 0.1, 200)
    r = paired_bootstrap(a, b, n_resamples=4000, confidence=0.9)
    assert r.quantile(0.05) == pytest.approx(r.ci_low)
    assert r.quantile(0.95) == pytest.approx(r.ci_high)
    assert "distribution" not in r.to_dict()
    json.dumps(r.to_dict())


def test_bootstrap_10k_by_10k_runs():
    # Speed sanity only (no timing assertion): 10,000 resamples over 10,000 paired samples.
    rng = _rng(0)
    a = (rng.random(10_000) < 0.7).astype(float)
    b = (rng.random(10_000) < 0.72).astype(float)
    r = paired_bootstrap(a, b, n_resamples=10_000, seed=0)
    assert r.distribution.shape == (10_000,)
    assert r.ci_low < r.estimate < r.ci_high


def test_bootstrap_validation():
    with pytest.raises(UserError, match="'acc'.*3 samples.*2"):
        paired_bootstrap([1, 0, 1], [1, 0], name="acc")
    with pytest.raises(UserError, match="'cider'.*non-finite.*index 1"):
        paired_bootstrap([1.0, float("nan")], [1.0, 2.0], name="cider")
    with pytest.raises(UserError, match="no samples"):
        bootstrap_ci([], name="x")
    with pytest.raises(UserError, match="inf"):
        bootstrap_ci([1.0, float("inf")])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0], confidence=1.0)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0], n_resamples=0)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0], statistic="median")


# ------------------------------------------------------------------------------ McNemar


def _table(n00: int, n01: int, n10: int, n11: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([0] * n00 + [0] * n01 + [1] * n10 + [1] * n11, dtype=float)
    b = np.array([0] * n00 + [1] * n01 + [0] * n10 + [1] * n11, dtype=float)
    return a, b


@pytest.mark.parametrize(
    "n01,n10,expected",
    [
        (0, 5, 2 * 0.5**5),  # 0.0625
        (1, 4, 2 * (1 + 5) / 32),  # 0.375
        (3, 3, 1.0),
        (0, 0, 1.0),
        (2, 10, 2 * (1 + 12 + 66) / 4096),
    ],
)
def test_mcnemar_hand_computed(n01, n10, expected):
    a, b = _table(7, n01, n10, 11)
    r = mcnemar_exact(a, b)
    assert (r.n00, r.n01, r.n10, r.n11, r.n) == (7, n01, n10, 11, 18 + n01 + n10)
    assert r.p_value == pytest.approx(expected, rel=1e-12)
    assert r.delta == pytest.approx((n01 - n10) / r.n)


def test_mcnemar_matches_scipy_binomtest():
    rng = _rng(9)
    for _ in range(50):
        n01, n10 = (int(v) for v in rng.integers(0, 60, 2))
        if n01 + n10 == 0:
            continue
        a, b = _table(int(rng.integers(0, 30)), n01, n10, int(rng.integers(0, 30)))
        ref = sps.binomtest(n01, n01 + n10, 0.5).pvalue
        assert mcnemar_exact(a, b).p_value == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_mcnemar_rejects_non_binary():
    with pytest.raises(UserError, match="'em'.*0 or 1.*candidate.*index 2"):
        mcnemar_exact([0, 1, 1], [0, 1, 0.5], name="em")
    assert mcnemar_exact([True, False], [True, True]).n01 == 1


# ------------------------------------------------------------------------------ sign / permutation


def test_sign_test_matches_binomtest_and_drops_zeros():
    rng = _rng(2)
    a = rng.integers(0, 5, 80).astype(float)
    b = a + rng.integers(-2, 3, 80)
    r = sign_test(a, b)
    d = b - a
    assert (r.n_pos, r.n_neg, r.n_zero) == (int((d > 0).sum()), int((d < 0).sum()), int((d == 0).sum()))
    assert r.p_value == pytest.approx(sps.binomtest(r.n_pos, r.n_pos + r.n_neg, 0.5).pvalue, rel=1e-9)
    assert sign_test([1.0, 2.0], [1.0, 2.0]).p_value == 1.0


def test_permutation_hand_computed():
    # d = [1, 1, 1]: of the 8 sign patterns only +++ and --- reach |sum| = 3.
    r = paired_permutation_test([0, 0, 0], [1, 1, 1])
    assert r.exact and r.n_resamples == 8 and r.p_value == pytest.approx(0.25)
    # Zeros are not flipped and do not count.
    r0 = paired_permutation_test([0, 0, 0, 5, 5], [1, 1, 1, 5, 5])
    assert r0.n_nonzero == 3 and r0.p_value == pytest.approx(0.25)
    assert r0.statistic == pytest.approx(0.6)
    assert paired_permutation_test([1.0, 2.0], [1.0, 2.0]).p_value == 1.0


def test_permutation_ties_survive_float_rounding():
    # 0.9 - 0.6 and 0.3 - 0.0 differ in the last bit; both patterns ++ and -- must count.
    r = paired_permutation_test([0.6, 0.0], [0.9, 0.3])
    assert r.p_value == pytest.approx(0.5)


def test_permutation_exact_matches_scipy():
    rng = _rng(21)
    for n in (6, 9, 12):
        a = rng.normal(size=n)
        b = a + rng.normal(0.5, 1.0, n)
        b[0] = a[0]  # a zero difference
        ref = sps.permutation_test(
            (a, b),
            lambda x, y, axis: np.mean(y - x, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=100_000,
            alternative="two-sided",
        )
        ours = paired_permutation_test(a, b)
        assert ours.exact
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_permutation_monte_carlo():
    rng = _rng(8)
    a = rng.normal(size=60)
    b = a + rng.normal(0.25, 1.0, 60)
    r1 = paired_permutation_test(a, b, n_resamples=20000, seed=4)
    r2 = paired_permutation_test(a, b, n_resamples=20000, seed=4)
    assert not r1.exact and r1.n_resamples == 20000
    assert r1.p_value == r2.p_value
    ref = sps.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=20000,
        random_state=1,
    ).pvalue
    assert r1.p_value == pytest.approx(ref, abs=0.01)
    # +1 correction: a huge effect still gives p = 1 / (B + 1), never 0.
    big = paired_permutation_test(np.zeros(40), np.ones(40) + rng.random(40), n_resamples=999)
    assert big.p_value == pytest.approx(1 / 1000)


# ------------------------------------------------------------------------------ compare_metric


def test_compare_metric_binary_uses_mcnemar():
    a, b = _table(10, 3, 12, 75)
    c = compare_metric(a, b, "binary", name="accuracy", n_resamples=2000)
    assert c.test == "mcnemar_exact"
    assert c.p_value == pytest.approx(mcnemar_exact(a, b).p_value)
    assert c.delta == pytest.approx((3 - 12) / 100)
    assert c.baseline == pytest.approx(0.87) and c.candidate == pytest.approx(0.78)
    assert c.ci_low < c.delta < c.ci_high and c.n == 100
    assert c.improvement == pytest.approx(c.delta)
    d = c.to_dict()
    json.dumps(d)
    assert d["metric"] == "accuracy" and "bootstrap" not in d and d["n_resamples"] == 2000


@pytest.mark.parametrize("kind", ["continuous", "corpus"])
def test_compare_metric_continuous_and_corpus(kind):
    rng = _rng(12)
    a = rng.choice([0, 0.3, 0.6, 0.9, 1.0], 200)
    b = np.clip(a + rng.choice([-0.3, 0, 0, 0.3], 200), 0, 1)
    c = compare_metric(a, b, kind, higher_is_better=False, n_resamples=3000, seed=2)
    assert c.test == "paired_permutation"
    assert c.p_value == pytest.approx(paired_permutation_test(a, b, n_resamples=3000, seed=2).p_value)
    assert c.secondary["sign_test"] == pytest.approx(sign_test(a, b).p_value)
    assert c.improvement == pytest.approx(-c.delta)
    assert c.delta == pytest.approx(b.mean() - a.mean())


def test_compare_metric_validation():
    with pytest.raises(UserError, match="unknown metric kind 'ordinal'"):
        compare_metric([1.0], [1.0], "ordinal", name="m")
    with pytest.raises(UserError, match="'vqa_acc'.*non-finite"):
        compare_metric([1.0, np.nan], [1.0, 0.0], "continuous", name="vqa_acc")
    with pytest.raises(UserError, match="'acc'.*0 or 1"):
        compare_metric([1.0, 2.0], [1.0, 0.0], "binary", name="acc")


def test_large_samples_with_few_values_resample_counts_with_the_same_distribution(monkeypatch):
    """Above COUNTS_MIN_N samples with few distinct values, resamples are drawn as counts: the same
    bootstrap distribution and permutation p-value as per-index draws (up to Monte-Carlo error),
    deterministic for a seed."""
    import mmgpt_eval.stats as st

    rng = np.random.default_rng(11)
    n = 30_000
    a = (rng.random(n) < 0.40).astype(float)
    b = (rng.random(n) < 0.41).astype(float)
    third = np.minimum(1.0, rng.integers(0, 4, 2 * n) / 3)  # VQA-like values; about half the pairs differ
    c = np.clip(third + rng.choice([-1 / 3, 0.0, 0.0, 1 / 3], 2 * n, p=[0.25, 0.25, 0.25, 0.25]), 0.0, 1.0)
    counts = st.paired_bootstrap(a, b, 2000, seed=1)
    again = st.paired_bootstrap(a, b, 2000, seed=1)
    perm = st.paired_permutation_test(third, c, 2000, seed=2)
    assert counts.ci_low == again.ci_low and counts.ci_high == again.ci_high
    monkeypatch.setattr(st, "COUNTS_MIN_N", 10**9)
    index = st.paired_bootstrap(a, b, 2000, seed=1)
    perm_index = st.paired_permutation_test(third, c, 2000, seed=2)
    assert counts.estimate == index.estimate
    assert counts.distribution.std() == pytest.approx(index.distribution.std(), rel=0.1)
    assert counts.ci_low == pytest.approx(index.ci_low, abs=0.002)
    assert counts.ci_high == pytest.approx(index.ci_high, abs=0.002)
    assert perm.p_value == pytest.approx(perm_index.p_value, abs=0.05)
    assert perm.n_nonzero == perm_index.n_nonzero and 0.01 < perm_index.p_value < 0.99
