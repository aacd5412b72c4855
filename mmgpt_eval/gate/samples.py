"""What the gate reads from a run: the per-sample values of one metric, and their checks.

Data interface
--------------
:func:`~mmgpt_eval.gate.evaluate_gate` takes a callable ``fetch(task, metric, which)`` with
``which`` in ``("baseline", "candidate")`` that returns a :class:`MetricSamples` (or the plain
tuple ``(ids, values, kind, corpus_value)``) and raises ``KeyError`` when that run has no such
task/metric. Malformed data should be reported by raising :class:`UserError`; it becomes an
error for that rule (other rules are still evaluated). Other exceptions propagate.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Optional, Sequence, Tuple, Union

import numpy as np

from ..agreement import MEAN_KINDS, disagreement
from ..compare import MetricSamples
from ..errors import UserError
from ..stats import KINDS

__all__ = ["MetricSamples", "Fetch", "FetchResult", "validated_arrays"]

Which = Literal["baseline", "candidate"]


#: What ``fetch`` returns: a :class:`MetricSamples` or the tuple ``(ids, values, kind, corpus_value)``.
FetchResult = Union[MetricSamples, Tuple[Sequence[Union[str, int]], Sequence[float], str, Optional[float]]]
#: ``fetch(task, metric, which) -> FetchResult`` with ``which`` in ("baseline", "candidate");
#: raises ``KeyError`` when that run lacks the task/metric.
Fetch = Callable[[str, str, Which], FetchResult]


def validated_arrays(s: MetricSamples, label: str, which: str) -> tuple[list[str | int], np.ndarray]:
    """``(ids, values)`` of one run's samples, checked; any problem is a :class:`UserError`."""
    ids = list(s.ids)
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, (str, int, np.integer)):
            raise UserError(f"{label}: {which} sample ids must be strings or integers, got {v!r}")
    ids = [int(v) if isinstance(v, np.integer) else v for v in ids]
    try:
        values = np.asarray(s.values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{label}: {which} values are not numbers") from None
    if values.ndim != 1 or values.size != len(ids):
        raise UserError(f"{label}: {which} has {len(ids)} ids but {values.size} values")
    seen: set[str | int] = set()
    for v in ids:
        if v in seen:
            raise UserError(f"{label}: {which} has duplicate sample id {v!r}")
        seen.add(v)
    if s.kind not in KINDS:
        raise UserError(f"{label}: {which} has unknown metric kind {s.kind!r} (expected one of {', '.join(KINDS)})")
    if not (_is_real(s.scale) and math.isfinite(s.scale) and s.scale > 0):
        raise UserError(f"{label}: {which} scale must be a positive number, got {s.scale!r}")
    if not np.all(np.isfinite(values)):
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise UserError(f"{label}: {which} value for sample {ids[i]!r} is {values[i]} (must be finite)")
    if s.corpus_value is not None and values.size:
        cv = s.corpus_value
        if not _is_real(cv) or not math.isfinite(cv):
            raise UserError(f"{label}: {which} corpus value must be a finite number, got {cv!r}")
        if s.kind in MEAN_KINDS:
            # a mean-type metric: compared at the precision the run stored it with (see agreement)
            implied = disagreement(float(cv), values.tolist(), float(s.scale))
            bad = implied is not None
        else:
            # a corpus metric is not the mean of its per-sample values: a 1 % check against unit mix-ups
            implied = s.scale * float(values.mean())
            bad = abs(implied - cv) > 1e-2 * max(abs(cv), abs(implied)) + 1e-9
        if bad:
            raise UserError(
                f"{label}: {which} reports {cv:g} but its per-sample values average to {implied:g} "
                f"(scale {s.scale:g}); the gate needs a metric that is the mean of its per-sample values "
                "(check the units/scale and that ids and values come from the same run)"
            )
    return ids, values


def _is_real(v: Any) -> bool:
    """A real number, numpy scalars included, but not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
