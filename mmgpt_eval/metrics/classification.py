"""Classification metrics for ranking tasks: top-k accuracy and ROC-AUC. Pure functions.

``roc_auc`` is the area under the ROC curve of ``scores`` for the positive class, computed as the
Mann-Whitney statistic: the probability that a random positive scores above a random negative,
ties counting one half. This equals the trapezoidal area under the ROC curve, which is what
scikit-learn's ``roc_auc_score`` (OpenFlamingo's Hateful Memes metric) reports; tests compare them.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC-AUC for binary ``labels`` (1 = positive). NaN when only one class is present."""
    if len(labels) != len(scores):
        raise ValueError("labels and scores differ in length")
    pos = sum(1 for y in labels if y == 1)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average ranks over ties (1-based)
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y == 1)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def top_k_correct(ranked: Sequence[str], reference: str, k: int) -> int:
    """1 when ``reference`` is among the first ``k`` of ``ranked`` (best first)."""
    return int(reference in list(ranked)[:k])


def softmax_p(scores: Mapping[str, float], label: str) -> float:
    """Softmax probability of ``label`` over the class scores (Hateful Memes: P(yes) from the two
    classes' log-likelihood scores)."""
    m = max(scores.values())
    z = sum(math.exp(v - m) for v in scores.values())
    return math.exp(scores[label] - m) / z
