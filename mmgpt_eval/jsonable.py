"""One conversion of Python values to what JSON can hold, for provenance and breakdowns."""

from __future__ import annotations

from typing import Any


def jsonable(obj: Any) -> Any:
    """``obj`` with dict keys as strings, tuples as lists, and any value JSON has no type for as its
    ``repr`` (a checkpoint's metadata may hold arbitrary objects)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)
