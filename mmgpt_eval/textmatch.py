"""Text matching shared by the dialogue probe files (their validation, ``mmgpt_eval.data.dialog_spec``)
and the dialogue probes (``mmgpt_eval.metrics.dialog``, whose module docstring states the rules):
case folding, keyword search and short-answer normalisation. Pure functions."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # a regex character-class body
_CJK_RE = re.compile(f"[{CJK}]")
_PUNCT_RE = re.compile(r"[^\w\s]|_")
#: Number words from zero to twenty; a word's index is its value.
NUMBER_WORDS_TO_TWENTY = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
_NUM_MAP = {w: str(i) for i, w in enumerate(NUMBER_WORDS_TO_TWENTY)}
_ARTICLES = {"a", "an", "the"}


def fold(text: str) -> str:
    """NFKC, casefold, typographic apostrophe -> ``'``."""
    return unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")


def check_str(text: Any, name: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str, got {type(text).__name__}")
    return text


def _term_regex(term: str) -> re.Pattern[str]:
    t = fold(term).strip()
    if not t:
        raise ValueError("empty keyword")
    if any(ch.isspace() for ch in t) or _CJK_RE.search(t):
        return re.compile(re.escape(" ".join(t.split())))
    return re.compile(rf"(?<!\w){re.escape(t)}(?!\w)")


def find_term(text: str, term: str) -> bool:
    """Whether ``term`` (or one of its ``|``-separated alternatives) occurs in ``text``."""
    hay = " ".join(fold(check_str(text)).split())
    return any(_term_regex(alt).search(hay) for alt in term.split("|") if alt.strip())


def normalise_answer(text: str) -> str:
    """Normalised form for answer comparison: punctuation -> space, number words -> digits, articles
    dropped."""
    t = _PUNCT_RE.sub(" ", fold(check_str(text)).replace("'", ""))
    words = [_NUM_MAP.get(w, w) for w in t.split()]
    return " ".join(w for w in words if w not in _ARTICLES)
