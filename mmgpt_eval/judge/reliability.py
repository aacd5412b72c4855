"""How far a judge can be trusted, measured (pure functions over numbers):

- :func:`krippendorff_alpha`: agreement of repeated scores (ordinal by default; nominal and interval
  too), over a raters x units matrix with NaN for a missing score, from the coincidence matrix;
- :func:`fleiss_kappa`: agreement of categorical verdicts (subjects x categories counts, the same
  number of ratings per subject);
- :func:`position_bias_rate` and :func:`parse_failure_rate`;
- :func:`hierarchical_interval` / :func:`score_difference_interval`: a paired comparison's percentile
  bootstrap interval that resamples the samples and, inside each resampled sample, the judge repeats,
  so the interval is as wide as sample variation plus judge noise make it.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .modes import Judgment, PairJudgment

OUTCOME_VALUE = {"a": 1.0, "tie": 0.5, "b": 0.0}


def _delta2(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared difference of every pair of values (Krippendorff's metric for the level)."""
    v = len(values)
    if level == "nominal":
        return 1.0 - np.eye(v)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        i, k = np.meshgrid(np.arange(v), np.arange(v), indexing="ij")
        lo, hi = np.minimum(i, k), np.maximum(i, k)
        between = cum[hi + 1] - cum[lo]  # n_g summed over the ranks lo..hi
        return (between - (n_c[i] + n_c[k]) / 2.0) ** 2 * (i != k)
    raise ValueError(f"unknown level {level!r}; known: nominal, ordinal, interval")


def krippendorff_alpha(data: ArrayLike, level: str = "ordinal") -> float:
    """Krippendorff's alpha of a raters x units matrix (NaN: no value). Units with fewer than two
    values are not pairable and left out; NaN when fewer than two pairable values or no variation."""
    x = np.asarray(data, dtype=float)
    if x.ndim != 2:
        raise ValueError("data must be a raters x units matrix")
    values = np.unique(x[~np.isnan(x)])
    if len(values) == 0:
        return float("nan")
    counts = np.stack([(x == v).sum(axis=0) for v in values], axis=1).astype(float)  # units x values
    m = counts.sum(axis=1)
    keep = m >= 2
    counts, m = counts[keep], m[keep]
    if len(m) == 0:
        return float("nan")
    o = (np.einsum("uc,uk->ck", counts / (m - 1)[:, None], counts)) - np.diag((counts / (m - 1)[:, None]).sum(axis=0))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    d2 = _delta2(values, n_c, level)
    expected = (np.outer(n_c, n_c) * d2).sum()
    if expected == 0:
        return float("nan")
    return float(1.0 - (n - 1) * (o * d2).sum() / expected)


def fleiss_kappa(counts: ArrayLike) -> float:
    """Fleiss' kappa of a subjects x categories matrix of rating counts (equal ratings per subject)."""
    c = np.asarray(counts, dtype=float)
    n = c.sum(axis=1) if c.ndim == 2 else np.zeros(0)
    if len(n) == 0 or not np.all(n == n[0]) or n[0] < 2:
        raise ValueError("counts must be subjects x categories with the same number (>= 2) of ratings each")
    r = n[0]
    p_i = ((c**2).sum(axis=1) - r) / (r * (r - 1))
    p_j = c.sum(axis=0) / c.sum()
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    if p_e == 1.0:
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def verdict_counts(pairs: Sequence[PairJudgment]) -> np.ndarray:
    """Pairwise outcomes as Fleiss' input: one row per (item, turn) judged without failure in every
    repeat, counts of outcomes a / tie / b across the repeats."""
    units: dict[tuple[str, int], list[str | None]] = {}
    for p in pairs:
        units.setdefault((p.item_id, p.turn), []).append(p.outcome)
    rows = [[outs.count(k) for k in ("a", "tie", "b")] for outs in units.values() if None not in outs]
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def position_bias_rate(pairs: Sequence[PairJudgment]) -> float:
    """Share of position-swapped pairs (both verdicts parsed) whose two verdicts chose the same position."""
    flags = [p.follows_position for p in pairs if p.follows_position is not None]
    return float(np.mean(flags)) if flags else float("nan")


def parse_failure_rate(failures: int, judgments: int) -> float:
    return failures / judgments if judgments else float("nan")


def outcome_matrix(pairs: Sequence[PairJudgment], repeats: int) -> np.ndarray:
    """(item, turn) x repeat matrix of pairwise outcomes: 1 run A wins, 0.5 tie, 0 run B wins, NaN failure."""
    keys = sorted({(p.item_id, p.turn) for p in pairs})
    row = {k: i for i, k in enumerate(keys)}
    out = np.full((len(keys), repeats), np.nan)
    for p in pairs:
        o = p.outcome
        if o is not None:
            out[row[(p.item_id, p.turn)], p.repeat] = OUTCOME_VALUE[o]
    return out


def score_matrix(judgments: Sequence[Judgment], dimension: str, repeats: int) -> tuple[list[str], np.ndarray]:
    """Item ids and the item x repeat matrix of one dimension's score, each conversation's score the
    mean over its turns in that repeat (turns that failed left out; NaN when every turn failed)."""
    ids = sorted({j.item_id for j in judgments})
    row = {k: i for i, k in enumerate(ids)}
    total = np.zeros((len(ids), repeats))
    count = np.zeros((len(ids), repeats))
    for j in judgments:
        if j.scores is not None:
            total[row[j.item_id], j.repeat] += j.scores[dimension]
            count[row[j.item_id], j.repeat] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return ids, np.where(count > 0, total / np.maximum(count, 1), np.nan)


def dimension_means(judgments: Sequence[Judgment]) -> dict[str, float]:
    """Mean score per dimension over every judgment that parsed (turns, items and repeats alike)."""
    sums: dict[str, list[int]] = {}
    for j in judgments:
        for k, v in (j.scores or {}).items():
            sums.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def relative_score(judgments: Sequence[Judgment]) -> float:
    """The reference-guided relative score as LLaVA-Bench reports it: 100 x mean candidate score /
    mean reference score over the judgments that parsed (NaN when none did)."""
    parsed = [j.scores for j in judgments if j.scores is not None]
    if not parsed:
        return float("nan")
    ref = float(np.mean([s["reference"] for s in parsed]))
    return 100.0 * float(np.mean([s["candidate"] for s in parsed])) / ref


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float
    n_samples: int
    n_repeats: int


def _resampled_means(x: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per bootstrap replicate: the mean over resampled rows of each row's mean over resampled repeats."""
    b, n = rows.shape
    r = x.shape[1]
    if r == 1:
        return x[rows, 0]
    flat = x[rows.reshape(-1)]  # (b * n, r): each chosen sample's repeats
    cols = rng.integers(0, r, size=(r, b * n))
    picks = np.arange(b * n)
    if np.isnan(x).any():
        return np.nanmean(np.stack([flat[picks, c] for c in cols], axis=1), axis=1).reshape(b, n)
    total = flat[picks, cols[0]]
    for c in cols[1:]:
        total = total + flat[picks, c]
    return (total / r).reshape(b, n)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No "mean of empty slice" warnings: a sample whose every judgment failed is NaN and left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _check(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a samples x repeats matrix with at least 2 samples")
    return a


def _interval(est: float, reps: np.ndarray, confidence: float, n: int, r: int) -> Interval:
    alpha = (1.0 - confidence) / 2.0
    reps = reps[~np.isnan(reps)]
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha]) if len(reps) else (np.nan, np.nan)
    return Interval(float(est), float(lo), float(hi), confidence, n, r)


def hierarchical_interval(
    values: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> Interval:
    """Mean of a samples x repeats matrix (NaN: a failed judgment) with a two-level percentile bootstrap
    interval: samples resampled with replacement, then each chosen sample's repeats. Use it for a
    paired difference per repeat or for pairwise outcomes (:func:`outcome_matrix`: the win rate)."""
    x = _check(values, "values")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, x.shape[0], size=(n_resamples, x.shape[0]))
    with _quiet():
        means = _resampled_means(x, rows, rng)
        reps = means.mean(axis=1) if not np.isnan(means).any() else np.nanmean(means, axis=1)
        est = float(np.nanmean(np.nanmean(x, axis=1)))
    return _interval(est, reps, confidence, x.shape[0], x.shape[1])


def score_difference_interval(
    a: ArrayLike, b: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> Interval:
    """Mean paired difference (run A - run B) of judge scores, each a samples x repeats matrix over the
    same samples; the samples are resampled together and each run's repeats independently."""
    xa, xb = _check(a, "a"), _check(b, "b")
    if xa.shape[0] != xb.shape[0]:
        raise ValueError("a and b must score the same samples (same number of rows)")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, xa.shape[0], size=(n_resamples, xa.shape[0]))
    with _quiet():
        diff = _resampled_means(xa, rows, rng) - _resampled_means(xb, rows, rng)
        reps = diff.mean(axis=1) if not np.isnan(diff).any() else np.nanmean(diff, axis=1)
        est = float(np.nanmean(np.nanmean(xa, axis=1) - np.nanmean(xb, axis=1)))
    return _interval(est, reps, confidence, xa.shape[0], xa.shape[1])
