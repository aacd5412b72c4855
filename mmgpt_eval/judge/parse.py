"""Strict reading of a judge's reply: only its last non-blank line counts, and it must be exactly the
machine-readable line the template asked for (``SCORES: a=7; b=8`` with every asked name once and
integers 1-10, or ``VERDICT: A`` / ``B`` / ``tie``). Anything else is a :class:`ParseFailure`, never a
score; callers count them."""

from __future__ import annotations

import re
from dataclasses import dataclass

SCORE_MIN, SCORE_MAX = 1, 10
_SCORES = re.compile(r"^SCORES:\s*(.*?)\s*$")
_PAIR = re.compile(r"^([a-z_]+)\s*=\s*(\d{1,2})$")
_VERDICT = re.compile(r"^VERDICT:\s*(A|B|tie)\s*$")


@dataclass(frozen=True)
class ParseFailure:
    reason: str
    text: str  # the reply's last non-blank line (or "" for an empty reply)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_scores(text: str, names: tuple[str, ...]) -> dict[str, int] | ParseFailure:
    """``{name: score}`` for exactly ``names``, from a ``SCORES:`` last line."""
    last = _last_line(text)
    m = _SCORES.match(last)
    if not m:
        return ParseFailure("the last line is not a SCORES: line" if last else "empty reply", last)
    out: dict[str, int] = {}
    for part in m.group(1).split(";"):
        pm = _PAIR.match(part.strip())
        if not pm:
            return ParseFailure(f"not name=score: {part.strip()!r}", last)
        name, value = pm.group(1), int(pm.group(2))
        if name in out:
            return ParseFailure(f"{name} given twice", last)
        if not SCORE_MIN <= value <= SCORE_MAX:
            return ParseFailure(f"{name}={value} outside {SCORE_MIN}-{SCORE_MAX}", last)
        out[name] = value
    if set(out) != set(names):
        return ParseFailure(f"expected scores for {', '.join(names)}, got {', '.join(out) or 'none'}", last)
    return {n: out[n] for n in names}


def parse_verdict(text: str) -> str | ParseFailure:
    """``"A"``, ``"B"`` or ``"tie"`` from a ``VERDICT:`` last line."""
    last = _last_line(text)
    m = _VERDICT.match(last)
    if not m:
        return ParseFailure("the last line is not VERDICT: A, B or tie" if last else "empty reply", last)
    return m.group(1)
