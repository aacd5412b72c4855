"""Does a stored aggregate agree with its per-sample values? Compared at the precision it was stored with.

A task stores a mean-type metric (``MetricInfo`` kind ``binary`` or ``continuous``: the corpus value is
``scale * mean(per-sample values)``, ``None`` values dropped) rounded to a number of decimals the task
chooses (2 for most built-in tasks, 4 for the default :meth:`Task.aggregate`) and does not record. The
shortest decimal form of the stored float has ``k`` decimals with ``k <= d`` for the ``d`` the task used
(``round(x, d)`` is a number with at most ``d`` decimals), so the stored value is within half a unit of
its own last digit of the exact mean: ``|scale * mean - stored| <= 0.5 * 10**-k``. The check allows that
plus float error of the summation (the task summed in its own order; here an exact ``math.fsum``):

    tolerance = 0.5 * 10**-k + 1e-9 * (|stored| + scale * mean(|values|)) + 1e-12

A genuine run therefore always passes, whatever ``n`` and however close the metric is to 0 or 100. A
change of the stored value, or of per-sample values, is caught whenever it moves the mean by more than
that. What cannot be caught: a change smaller than the stored precision (at n = 214k one flipped 0/1
sample moves a percentage by 0.0005, below 2 decimals), and a stored value with trailing zeros gets the
tolerance of the digits it shows (20.0 is checked to +/- 0.5, 20.25 to +/- 0.005).

Metrics that are not means of their per-sample values (kind ``corpus``: BLEU, CIDEr; ``corpus-only``:
ROC-AUC, medians) are not checked here; the gate keeps a 1 % sanity check on ``corpus`` values against
the per-sample mean (a units mix-up), see :mod:`mmgpt_eval.gate.samples`.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Iterable

MEAN_KINDS = ("binary", "continuous")


def stored_decimals(value: float) -> int:
    """Decimals of ``value``'s shortest decimal form, trailing zeros dropped (0.2 -> 1, 20.0 -> 0,
    31.25 -> 2, 1e-05 -> 5)."""
    try:
        exp = Decimal(repr(float(value))).normalize().as_tuple().exponent
    except (InvalidOperation, ValueError, OverflowError):
        return 0
    return -exp if isinstance(exp, int) and exp < 0 else 0


def mean_and_tolerance(stored: float, values: Iterable[float], scale: float) -> tuple[float, float] | None:
    """``(scale * mean(values), tolerance)`` for a stored mean-type value; None without values."""
    vals = [float(v) for v in values]
    if not vals:
        return None
    n = len(vals)
    implied = scale * math.fsum(vals) / n
    magnitude = abs(stored) + scale * math.fsum(abs(v) for v in vals) / n
    return implied, 0.5 * 10.0 ** -stored_decimals(stored) + 1e-9 * magnitude + 1e-12


def disagreement(stored: float, values: Iterable[float], scale: float) -> float | None:
    """The implied value ``scale * mean(values)`` when it disagrees with ``stored`` beyond the stored
    precision (see the module docstring); None when they agree or there is nothing to compare."""
    if not _finite(stored) or not _finite(scale):
        return None
    got = mean_and_tolerance(float(stored), values, float(scale))
    if got is None:
        return None
    implied, tol = got
    return None if abs(implied - float(stored)) <= tol else implied


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
