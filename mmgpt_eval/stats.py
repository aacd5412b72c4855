"""Paired statistics for comparing two evaluation runs on the same samples.

Every function here compares a *baseline* run ``a`` with a *candidate* run ``b`` that were
evaluated on exactly the same samples, given as two per-sample arrays aligned by sample id
(element ``i`` of ``a`` and of ``b`` belong to the same sample). Pairing matters: most of the
run-to-run noise comes from *which* samples are hard, and that is shared by both runs, so
working on the per-sample differences ``d = b - a`` gives much tighter answers than comparing
two independent means.

Kinds of per-sample metric (``kind``):

``binary``
    0/1 per sample (exact-match accuracy, counting exact match). The run's value is the mean
    (the accuracy). Significance test: exact McNemar test on the discordant pairs.
``continuous``
    any finite number per sample (VQA soft accuracy in {0, .3, .6, .9, 1}, response length,
    absolute error). The run's value is the mean. Significance test: paired sign-flip
    permutation test on the mean difference; the sign test is reported alongside.
``corpus``
    a corpus metric that is the *mean of fixed per-sample contributions*, e.g. CIDEr(-D): its
    corpus value is the mean of per-image scores, where the IDF weights are computed once from
    the full evaluated set. The bootstrap resamples those fixed per-image values and does *not*
    recompute the IDF inside each resample. This is the standard, cheap approximation: it
    treats the IDF as a constant of the evaluation set, so the interval reflects sampling
    variation of the images but not the (small, second-order) variation of the IDF itself.
    Metrics that are not a mean of per-sample contributions (corpus BLEU with its global
    brevity penalty, for instance) cannot be handled this way. Tests as for ``continuous``.

Bootstrap intervals. :func:`paired_bootstrap` resamples *pairs* (sample indices) with
replacement, ``n_resamples`` times, and records the delta ``mean(b*) - mean(a*)`` (equal to
``mean(d*)``) of each resample. The default interval is the *percentile* interval: the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those resampled deltas
(``numpy.quantile``, linear interpolation). ``method="bca"`` gives the bias-corrected and
accelerated interval (Efron 1987); for the mean its jackknife acceleration has an exact closed
form, so it costs nothing extra. Indices are drawn as integers from
``numpy.random.Generator(PCG64(seed))`` in chunks of about 2**20 indices, so memory stays
small (about 16 MB) however many resamples are asked for; the result is a deterministic
function of the data, ``n_resamples`` and ``seed`` (for a given numpy version).

Large samples with few distinct values (0/1 answers, VQA accuracies in steps of 1/3 and 0.3,
their paired differences): above ``COUNTS_MIN_N`` samples with at most ``n / 8`` distinct values,
a resample is drawn as the *counts* of each distinct value (a multinomial over the observed
frequencies) instead of ``n`` indices, and a sign-flip permutation as one binomial count of kept
signs per distinct value. Both have exactly the distribution of the index / per-sample draws, so
the intervals and p-values are the same bootstrap and permutation test, at a cost that grows with
the number of distinct values instead of ``n``; the random stream differs from the per-index draws,
so at those sizes a seed gives other (equally valid) resamples than the index method would.
Below ``COUNTS_MIN_N`` samples every result is the per-index one.

Input problems the user can fix (unequal lengths, NaN/inf, non-0/1 values for a binary metric,
an empty array, an unknown kind) raise :class:`~mmgpt_eval.errors.UserError` naming the metric.
Programming errors (bad ``confidence``, ``n_resamples``) raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
from scipy import stats as _sps

from .errors import UserError

__all__ = [
    "KINDS",
    "BootstrapResult",
    "McNemarResult",
    "SignTestResult",
    "PermutationResult",
    "Comparison",
    "paired_bootstrap",
    "bootstrap_ci",
    "mcnemar_exact",
    "sign_test",
    "paired_permutation_test",
    "compare_metric",
]

Kind = Literal["binary", "continuous", "corpus"]
KINDS: tuple[str, ...] = ("binary", "continuous", "corpus")
BootstrapMethod = Literal["percentile", "bca"]

ArrayLike = Sequence[float] | np.ndarray

# About this many int64 indices (8 bytes each) are drawn per chunk; the gathered values take
# as much again. 2**20 keeps each chunk at ~16 MB and is also the fastest size measured.
_CHUNK_ELEMENTS = 1 << 20
# Exact enumeration of all 2**m sign patterns up to this many non-zero differences (2**20
# sums = 8 MB); Monte-Carlo above it.
_EXACT_PERMUTATION_MAX = 20
#: from this many samples on, few distinct values are resampled as counts (see the module docstring)
COUNTS_MIN_N = 20_000


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap estimate with its confidence interval.

    ``estimate`` is the statistic on the observed data (the mean of one run, or the paired
    delta ``mean(b) - mean(a)``); ``[ci_low, ci_high]`` is the two-sided interval at
    ``confidence``. ``distribution`` holds the ``n_resamples`` resampled statistics, sorted,
    so other quantiles (e.g. a one-sided bound) can be read with :meth:`quantile` without
    resampling again; it is left out of :meth:`to_dict`.
    """

    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    n_resamples: int
    seed: int
    method: str = "percentile"
    statistic: str = "mean"
    z0: float = 0.0  # BCa bias correction (0 for the percentile method)
    acceleration: float = 0.0  # BCa acceleration (0 for the percentile method)
    distribution: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile of the bootstrap distribution, BCa-adjusted when method is "bca".

        ``quantile(1 - c)`` is a one-sided lower confidence bound at confidence ``c`` and
        ``quantile(c)`` a one-sided upper bound.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        if self.distribution.size == 0:
            return float(self.estimate)
        if self.method == "bca":
            q = _bca_adjust(q, self.z0, self.acceleration)
        return float(np.quantile(self.distribution, q))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("distribution")
        return d


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test for paired binary outcomes.

    ``n01``: samples the baseline got wrong (0) and the candidate right (1);
    ``n10``: baseline right, candidate wrong. Only these discordant pairs carry information
    about a difference; under "no difference" each of them is equally likely to fall either
    way, so ``n01 ~ Binomial(n01 + n10, 1/2)`` and the two-sided p-value is
    ``min(1, 2 * P(X <= min(n01, n10)))`` (1 when there are no discordant pairs).
    """

    n: int
    n00: int
    n01: int
    n10: int
    n11: int
    p_value: float
    test: str = "mcnemar_exact"

    @property
    def delta(self) -> float:
        """Accuracy difference candidate - baseline, ``(n01 - n10) / n``."""
        return (self.n01 - self.n10) / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta}


@dataclass(frozen=True)
class SignTestResult:
    """Exact sign test on the paired differences ``d = b - a``.

    Zero differences are dropped; under "no difference" each non-zero difference is positive
    with probability 1/2, so the two-sided p-value is ``min(1, 2 * P(X <= min(n_pos, n_neg)))``
    with ``X ~ Binomial(n_pos + n_neg, 1/2)``. It ignores magnitudes, so it is robust to a few
    huge differences but less powerful than the permutation test.
    """

    n: int
    n_pos: int
    n_neg: int
    n_zero: int
    p_value: float
    test: str = "sign_test"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PermutationResult:
    """Paired sign-flip permutation test of the mean difference ``mean(b - a)``.

    Under "no difference" the labels baseline/candidate of each pair are exchangeable, i.e.
    each difference is as likely to have the opposite sign. The p-value is the fraction of
    sign patterns whose ``|mean|`` is at least the observed one (two-sided). ``exact``: all
    ``2**n_nonzero`` patterns were enumerated (``n_resamples`` is then that count); otherwise
    ``n_resamples`` random patterns were drawn and ``p = (1 + hits) / (1 + n_resamples)``,
    which counts the observed pattern itself and so never returns an impossible p of 0.
    """

    n: int
    n_nonzero: int
    statistic: float
    p_value: float
    exact: bool
    n_resamples: int
    seed: int
    test: str = "paired_permutation"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Baseline (``a``) vs candidate (``b``) on one metric, from :func:`compare_metric`.

    ``delta = candidate - baseline`` in the metric's own scale (the mean of the per-sample
    values; for ``binary`` that is the accuracy as a fraction). ``[ci_low, ci_high]`` is the
    two-sided paired-bootstrap interval of ``delta`` at ``confidence``. ``p_value``/``test`` is
    the primary significance test for the kind (McNemar for binary, permutation otherwise);
    ``secondary`` holds further p-values (the sign test for continuous/corpus). The raw
    :class:`BootstrapResult` is kept in ``bootstrap`` (not serialised) so callers can read
    other quantiles of the same resamples.
    """

    metric: str
    kind: str
    n: int
    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    test: str
    higher_is_better: bool
    secondary: dict[str, float] = field(default_factory=dict)
    bootstrap: BootstrapResult | None = field(default=None, repr=False, compare=False)

    @property
    def improvement(self) -> float:
        """``delta`` oriented so that positive means better (``-delta`` for lower-is-better)."""
        return self.delta if self.higher_is_better else -self.delta

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "bootstrap"}
        d["secondary"] = dict(self.secondary)
        if self.bootstrap is not None:
            d["n_resamples"] = self.bootstrap.n_resamples
            d["seed"] = self.bootstrap.seed
            d["ci_method"] = self.bootstrap.method
        return d


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_finite(x: ArrayLike, name: str, which: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"metric {name!r}: {which} values are not numbers") from None
    if arr.ndim != 1:
        raise UserError(f"metric {name!r}: {which} values must be a flat per-sample list, got shape {arr.shape}")
    if arr.size == 0:
        raise UserError(f"metric {name!r}: {which} has no samples")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"metric {name!r}: {which} has {int(bad.sum())} non-finite value(s) "
            f"(first: {arr[i]} at index {i}); per-sample values must be finite numbers"
        )
    return arr


def _paired(a: ArrayLike, b: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    a_arr = _as_finite(a, name, "baseline")
    b_arr = _as_finite(b, name, "candidate")
    if a_arr.shape != b_arr.shape:
        raise UserError(
            f"metric {name!r}: baseline has {a_arr.size} samples but candidate has {b_arr.size}; "
            "paired comparison needs the same samples in both runs"
        )
    return a_arr, b_arr


def _check_binary(arr: np.ndarray, name: str, which: str) -> None:
    bad = (arr != 0.0) & (arr != 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"metric {name!r}: binary metric must be 0 or 1 per sample, {which} has {arr[i]!r} at index {i}"
        )


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_resamples(n_resamples: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")


def _binom_two_sided(k_min: int, n: int) -> float:
    """``min(1, 2 * P(Binomial(n, 1/2) <= k_min))``; 1 when ``n == 0``."""
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * _sps.binom.cdf(k_min, n, 0.5)))


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def _bootstrap_means(x: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of ``n_resamples`` with-replacement resamples of ``x``, drawn in chunks.

    Each chunk draws a ``(rows, n)`` block of integer indices (about 2**20 of them), gathers
    ``x[idx]`` and averages each row; nothing of size ``n_resamples * n`` is ever held at once.
    Large samples with few distinct values draw counts instead (:func:`_distinct`).
    """
    n = x.size
    rng = np.random.Generator(np.random.PCG64(seed))
    out = np.empty(n_resamples, dtype=np.float64)
    few = _distinct(x)
    if few is not None:
        values, counts = few
        pvals = counts / n
        rows = max(1, _CHUNK_ELEMENTS // values.size)
        for start in range(0, n_resamples, rows):
            r = min(rows, n_resamples - start)
            drawn = rng.multinomial(n, pvals, size=r)
            out[start : start + r] = (drawn @ values) / n
        return out
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, rows):
        r = min(rows, n_resamples - start)
        idx = rng.integers(0, n, size=(r, n), dtype=np.int64)
        out[start : start + r] = x[idx].mean(axis=1)
    return out


def _distinct(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(distinct values, their counts)`` of a large sample with few distinct values (at least
    ``COUNTS_MIN_N`` samples, at most ``n / 8`` distinct values); None otherwise."""
    if x.size < COUNTS_MIN_N:
        return None
    values, counts = np.unique(x, return_counts=True)
    if values.size * 8 > x.size:
        return None
    return values, counts.astype(np.float64)


def _bca_adjust(q: float, z0: float, acc: float) -> float:
    """Map a nominal probability ``q`` to the BCa-adjusted percentile."""
    if q <= 0.0 or q >= 1.0:
        return q
    zq = _sps.norm.ppf(q)
    num = z0 + zq
    den = 1.0 - acc * num
    if den <= 0.0:  # acceleration so large the formula breaks down: take the extreme
        return 1.0 if num > 0 else 0.0
    return float(_sps.norm.cdf(z0 + num / den))


def _bootstrap_from_values(
    x: np.ndarray, n_resamples: int, confidence: float, seed: int, method: str, statistic: str
) -> BootstrapResult:
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    if statistic != "mean":
        raise ValueError(f"statistic must be 'mean' (the only one supported), got {statistic!r}")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    n = int(x.size)
    estimate = float(x.mean())
    dist = np.sort(_bootstrap_means(x, int(n_resamples), int(seed)))
    alpha = (1.0 - confidence) / 2.0
    z0 = acc = 0.0
    if method == "bca":
        # Bias correction: how far the observed value sits from the bootstrap median. Ties
        # count half, which matters for discrete data (binary metrics).
        below = np.searchsorted(dist, estimate, side="left")
        equal = np.searchsorted(dist, estimate, side="right") - below
        frac = (below + 0.5 * equal) / dist.size
        frac = min(max(frac, 0.5 / dist.size), 1.0 - 0.5 / dist.size)
        z0 = float(_sps.norm.ppf(frac))
        # Acceleration from the jackknife. For the mean the leave-one-out values are
        # (sum - x_i) / (n - 1), so the usual formula reduces exactly to a skewness ratio.
        dev = x - estimate
        ss = float(np.sum(dev**2))
        acc = float(np.sum(dev**3) / (6.0 * ss**1.5)) if n > 1 and ss > 0.0 else 0.0
        lo_q, hi_q = _bca_adjust(alpha, z0, acc), _bca_adjust(1.0 - alpha, z0, acc)
    else:
        lo_q, hi_q = alpha, 1.0 - alpha
    ci_low, ci_high = (float(v) for v in np.quantile(dist, [lo_q, hi_q]))
    return BootstrapResult(
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=float(confidence),
        n=n,
        n_resamples=int(n_resamples),
        seed=int(seed),
        method=method,
        statistic=statistic,
        z0=z0,
        acceleration=acc,
        distribution=dist,
    )


def paired_bootstrap(
    a: ArrayLike,
    b: ArrayLike,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: str = "mean",
    *,
    method: BootstrapMethod = "percentile",
    name: str = "metric",
) -> BootstrapResult:
    """Paired bootstrap interval for ``mean(b) - mean(a)`` (candidate minus baseline).

    Samples are resampled as *pairs*: one draw of sample indices is applied to both runs, so
    the shared difficulty of each sample cancels. For the mean this is the same as
    bootstrapping the per-sample differences ``d = b - a``, which is what is computed.

    The interval is the percentile interval by default (see the module docstring);
    ``method="bca"`` gives the BCa interval. ``statistic`` is reserved; only ``"mean"`` is
    supported. 10,000 resamples of 10,000 samples take well under a second or two and about
    16 MB of memory.
    """
    a_arr, b_arr = _paired(a, b, name)
    return _bootstrap_from_values(b_arr - a_arr, n_resamples, confidence, seed, method, statistic)


def bootstrap_ci(
    x: ArrayLike,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: str = "mean",
    *,
    method: BootstrapMethod = "percentile",
    name: str = "metric",
) -> BootstrapResult:
    """Bootstrap interval for the mean of one run's per-sample values (same method as above)."""
    arr = _as_finite(x, name, "run")
    return _bootstrap_from_values(arr, n_resamples, confidence, seed, method, statistic)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def mcnemar_exact(a: ArrayLike, b: ArrayLike, *, name: str = "metric") -> McNemarResult:
    """Exact (binomial) McNemar test for paired 0/1 outcomes of baseline ``a`` and candidate ``b``."""
    a_arr, b_arr = _paired(a, b, name)
    _check_binary(a_arr, name, "baseline")
    _check_binary(b_arr, name, "candidate")
    ai = a_arr.astype(bool)
    bi = b_arr.astype(bool)
    n01 = int(np.count_nonzero(~ai & bi))
    n10 = int(np.count_nonzero(ai & ~bi))
    n11 = int(np.count_nonzero(ai & bi))
    n00 = int(ai.size - n01 - n10 - n11)
    p = _binom_two_sided(min(n01, n10), n01 + n10)
    return McNemarResult(n=int(ai.size), n00=n00, n01=n01, n10=n10, n11=n11, p_value=p)


def sign_test(a: ArrayLike, b: ArrayLike, *, name: str = "metric") -> SignTestResult:
    """Exact two-sided sign test on the non-zero differences ``b - a``."""
    a_arr, b_arr = _paired(a, b, name)
    d = b_arr - a_arr
    n_pos = int(np.count_nonzero(d > 0))
    n_neg = int(np.count_nonzero(d < 0))
    p = _binom_two_sided(min(n_pos, n_neg), n_pos + n_neg)
    return SignTestResult(n=int(d.size), n_pos=n_pos, n_neg=n_neg, n_zero=int(d.size - n_pos - n_neg), p_value=p)


def paired_permutation_test(
    a: ArrayLike, b: ArrayLike, n_resamples: int = 10000, seed: int = 0, *, name: str = "metric"
) -> PermutationResult:
    """Two-sided paired permutation (sign-flip) test of ``mean(b - a)``.

    Zero differences cannot change sign, so only the ``m`` non-zero ones are flipped. With
    ``m <= 20`` all ``2**m`` sign patterns are enumerated and the p-value is exact; otherwise
    ``n_resamples`` random patterns are drawn from ``Generator(PCG64(seed))`` and
    ``p = (1 + #{|T*| >= |T|}) / (1 + n_resamples)``. Ties ``|T*| == |T|`` count as "at least
    as extreme", with a relative tolerance of 1e-9 so floating-point summation order does not
    decide them.
    """
    _check_resamples(n_resamples)
    a_arr, b_arr = _paired(a, b, name)
    d = b_arr - a_arr
    n = int(d.size)
    nz = d[d != 0.0]
    m = int(nz.size)
    statistic = float(d.mean())
    if m == 0:
        return PermutationResult(
            n=n, n_nonzero=0, statistic=statistic, p_value=1.0, exact=True, n_resamples=1, seed=seed
        )
    observed = abs(float(nz.sum()))
    tol = 1e-9 * float(np.abs(nz).sum())
    threshold = observed - tol
    if m <= _EXACT_PERMUTATION_MAX:
        # All 2**m signed sums, built by doubling: sums of the first k values with every sign.
        sums = np.zeros(1, dtype=np.float64)
        for v in nz:
            sums = np.concatenate((sums + v, sums - v))
        hits = int(np.count_nonzero(np.abs(sums) >= threshold))
        return PermutationResult(
            n=n,
            n_nonzero=m,
            statistic=statistic,
            p_value=hits / sums.size,
            exact=True,
            n_resamples=int(sums.size),
            seed=seed,
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    total = float(nz.sum())
    hits = 0
    few = _distinct(nz)
    if few is not None:
        # per distinct value v with count c: the kept signs are Binomial(c, 1/2), so the signed sum
        # is sum_v v * (2 * kept - c)
        values, counts = few
        c = counts.astype(np.int64)
        rows = max(1, _CHUNK_ELEMENTS // values.size)
        for start in range(0, n_resamples, rows):
            r = min(rows, n_resamples - start)
            kept = rng.binomial(c, 0.5, size=(r, values.size))
            signed = (2.0 * kept - counts) @ values
            hits += int(np.count_nonzero(np.abs(signed) >= threshold))
        p = (1.0 + hits) / (1.0 + n_resamples)
        return PermutationResult(
            n=n,
            n_nonzero=m,
            statistic=statistic,
            p_value=float(p),
            exact=False,
            n_resamples=int(n_resamples),
            seed=seed,
        )
    rows = max(1, _CHUNK_ELEMENTS // m)
    nbytes = (m + 7) // 8
    for start in range(0, n_resamples, rows):
        r = min(rows, n_resamples - start)
        # One random bit per difference: bit 1 keeps its sign, bit 0 flips it, so the signed
        # sum is 2 * (bits @ d) - sum(d).
        bits = np.unpackbits(rng.integers(0, 256, size=(r, nbytes), dtype=np.uint8), axis=1, count=m)
        signed = 2.0 * (bits.astype(np.float64) @ nz) - total
        hits += int(np.count_nonzero(np.abs(signed) >= threshold))
    p = (1.0 + hits) / (1.0 + n_resamples)
    return PermutationResult(
        n=n, n_nonzero=m, statistic=statistic, p_value=float(p), exact=False, n_resamples=int(n_resamples), seed=seed
    )


def compare_metric(
    a: ArrayLike,
    b: ArrayLike,
    kind: str,
    higher_is_better: bool = True,
    *,
    name: str = "metric",
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
    method: BootstrapMethod = "percentile",
) -> Comparison:
    """Compare baseline ``a`` with candidate ``b`` on one per-sample metric.

    Always reports ``delta = mean(b) - mean(a)`` with its paired-bootstrap interval at
    ``confidence``. The p-value comes from the test that suits the kind:

    * ``binary``: exact McNemar test (values must be 0/1);
    * ``continuous`` / ``corpus``: paired sign-flip permutation test of the mean difference,
      with the sign test's p-value in ``secondary["sign_test"]``.

    ``higher_is_better`` does not change any number; it only orients
    :attr:`Comparison.improvement` and tells readers which sign is good.
    """
    if kind not in KINDS:
        raise UserError(f"metric {name!r}: unknown metric kind {kind!r} (expected one of {', '.join(KINDS)})")
    a_arr, b_arr = _paired(a, b, name)
    secondary: dict[str, float] = {}
    if kind == "binary":
        mc = mcnemar_exact(a_arr, b_arr, name=name)
        p_value, test = mc.p_value, mc.test
    else:
        perm = paired_permutation_test(a_arr, b_arr, n_resamples=n_resamples, seed=seed, name=name)
        p_value, test = perm.p_value, perm.test
        secondary["sign_test"] = sign_test(a_arr, b_arr, name=name).p_value
    boot = paired_bootstrap(a_arr, b_arr, n_resamples, confidence, seed, method=method, name=name)
    return Comparison(
        metric=name,
        kind=kind,
        n=int(a_arr.size),
        baseline=float(a_arr.mean()),
        candidate=float(b_arr.mean()),
        delta=boot.estimate,
        ci_low=boot.ci_low,
        ci_high=boot.ci_high,
        confidence=float(confidence),
        p_value=float(p_value),
        test=test,
        higher_is_better=bool(higher_is_better),
        secondary=secondary,
        bootstrap=boot,
    )
