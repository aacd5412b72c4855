"""One rule for "is this stored value a number?", shared by every reader of results (report, compare,
frames, trackers).

A value is a number when it is a real number (``int``, ``float``, numpy scalars) and finite. A boolean
counts as 0 / 1 (per-sample answers are stored as ``true`` / ``false`` or 0 / 1, and the paired statistics
read them that way). A numeric-looking string is not a number, and neither is NaN (an undefined metric,
e.g. ROC-AUC of one class) or an infinity. Everything else is None: shown as a blank, left out of a
tracker, a missing cell in a frame.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Optional

import numpy as np


def number(x: Any) -> Optional[float]:
    """``x`` as a finite float (a boolean as 0.0 / 1.0), or None (missing, a string, non-numeric, NaN or
    infinite)."""
    if not isinstance(x, (Real, np.bool_)):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None
