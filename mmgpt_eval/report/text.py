"""Text in the page: the jinja2 ``finalize`` that makes every printed value clean text, and the
formatting of numbers, deltas and p-values. Clipping and value formatting are the ones task hooks
use (``mmgpt_eval.taskapi.reporting``), so a number looks the same in every table."""

from __future__ import annotations

import re
from typing import Any

from ..taskapi.reporting import clip, fmt_cell, fmt_num, fmt_value, number, to_text
from .limits import LIMITS

__all__ = ["clean", "clip", "to_text", "number", "fmt_num", "fmt_value", "fmt_delta", "fmt_p", "cell"]

_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def _ctrl_sub(m: re.Match) -> str:
    c = ord(m.group(0))
    if c < 0x20 or 0x7F <= c <= 0x9F:
        return f"\\x{c:02x}"  # visible escape, e.g. \x10
    return "\ufffd"  # unpaired surrogates, non-characters


def clean(value: Any) -> Any:
    """jinja2 ``finalize``: every printed value becomes clean text (markup from macros passes).

    Control characters (except tab / newline) become a visible ``\\xNN``; unpaired surrogates and
    non-characters become U+FFFD. The result is still plain text, escaped afterwards by autoescape.
    """
    from markupsafe import Markup

    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return _CTRL_RE.sub(_ctrl_sub, value)
    return value


def fmt_delta(v: Any, unit: str = "") -> str:
    f = number(v)
    if f is None:
        return "—"
    s = fmt_num(f)
    return ("+" + s if f > 0 else s.replace("-", "−")) + (unit if unit == "%" else "")


def fmt_p(p: Any) -> str:
    f = number(p)
    if f is None:
        return ""
    if f < 0.001:
        return "p<0.001"
    return f"p={f:.3f}" if f < 0.1 else f"p={f:.2f}"


def cell(v: Any, limit: int = LIMITS["cell"]) -> str:
    """Any value as a table cell (``—``, yes/no, a number, clipped text)."""
    return fmt_cell(v, limit)
