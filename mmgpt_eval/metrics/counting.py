"""Counting answers: parse a number out of free text, score it, aggregate over a corpus.

Parsing rule (:func:`parse_count`), in one sentence: **the first number expression in the text
wins**; text without a number expression is unparsable (``None``).

The text is NFKC-normalised (full-width digits become ASCII), lower-cased, and curly apostrophes
become ``'``. It is then scanned left to right; the first of the following expressions decides:

* **Digits** ``0-9`` standing as a word: ``"3"``, ``"3."``, ``"(3)"``, ``"3,"``, ``"3%"`` -> 3.
  Thousands groups ``"1,000"`` -> 1000. Digits glued to letters (``"3rd"``, ``"x3"``) are not
  numbers and are skipped.
* **Number words** ``zero`` .. ``nineteen``, the tens ``twenty`` .. ``ninety`` and compounds
  ``"twenty-one"`` / ``"twenty one"`` -> 21.
* A number (digits or word) directly followed by ``dozen`` / ``hundred`` / ``thousand`` is
  multiplied once: ``"two dozen"`` -> 24, ``"a dozen"`` / ``"dozen"`` -> 12,
  ``"half a dozen"`` -> 6. No further composition (``"one hundred and five"`` -> 100).
* **Zero words**: ``none``, ``nothing``, ``zero``; ``not any`` / ``n't any`` (``"there aren't
  any"``) -> 0; ``not a single`` / ``n't a single`` -> 0.
* **"no" as a determiner** -> 0: ``"no"`` followed, after spaces/tabs only (no punctuation, no
  line break), by a word that is not a number word and not in ``_NO_SKIP`` (comparatives such as
  ``more``/``fewer``/``less`` and clause starters such as ``there``/``it``/``i``/``the``):
  ``"There are no circles"`` -> 0, ``"No circles."`` -> 0. Any other ``"no"`` - the yes/no
  answer - is *not* a number expression and is skipped: ``"No, there are 3"`` -> 3,
  ``"No there are 3"`` -> 3, ``"No.\n3"`` -> 3, ``"no more than 4"`` -> 4, ``"No."`` -> ``None``.
* **"a"/"an" meaning one** -> 1, only in these contexts: ``"a single"`` (anywhere), ``"a/an"``
  as the first word of the text (``"A circle."``), or right after ``there is`` / ``there's`` /
  ``only`` / ``just`` / ``exactly``; and only when the next word is not a quantity word
  (``few``, ``couple``, ``lot``, ``total``, ``number``, ``dozen``, ...: ``_A_NOT_ONE``).
  ``"There is a circle"`` -> 1; ``"It is a picture of circles"`` -> ``None``.
  ``"a pair"`` -> 2 (anywhere).
* **Invalid numbers stop the scan with ``None``** when they come first: negative numbers
  (``"-3"``, ``"minus three"``, ``"negative 2"``), decimals (``"3.5"``, ``"2.0"``,
  ``"three point five"``), fractions (``"1/2"``, ``"1 1/2"``, ``"one half"``, ``"two thirds"``,
  ``"3 and a half"``, ``"half"``). A range ``"3-4"`` is not negative: it yields 3.
* Vague quantities (``a couple``, ``a few``, ``several``, ``some``, ``many``, ``dozens``) are not
  number expressions: they are skipped, so ``"A couple."`` -> ``None`` (ambiguous) but
  ``"A couple, maybe 3"`` -> 3.

Consequences worth knowing: ``"3 or 4"`` -> 3; ``"There is a circle and 2 squares"`` -> 1;
ordinals (``"the third"``) are skipped.

Scoring (:func:`count_metrics`): ``exact`` is 1 only for a parsed value equal to the truth (an
unparsable answer is wrong); ``abs_error`` / ``signed_error`` / ``off_by_one`` are ``None`` for
unparsable answers (never NaN), and the corpus MAE averages parsable answers only
(:func:`aggregate_counting` reports ``unparsable_rate`` beside it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..textmatch import NUMBER_WORDS_TO_TWENTY

__all__ = [
    "parse_count",
    "count_metrics",
    "aggregate_counting",
    "NUMBER_WORDS",
]

_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
#: Number words recognised on their own (compounds like "twenty-one" are built from these).
NUMBER_WORDS: dict[str, int] = {w: i for i, w in enumerate(NUMBER_WORDS_TO_TWENTY[:20])} | _TENS

_MULTIPLIERS = {"dozen": 12, "hundred": 100, "thousand": 1000}
_FRACTION_WORDS = {"half", "halves", "third", "thirds", "quarter", "quarters", "fourth", "fourths", "fifth", "fifths"}
_ZERO_WORDS = {"none", "nothing"}
# "no X" is 0 unless X is one of these: then "no" is part of a comparative phrase ("no more
# than 4") or an interjection followed by a new clause ("No there are 3", "No it is 2").
_NO_SKIP = {
    "more",
    "fewer",
    "less",
    "longer",
    "greater",
    "larger",
    "smaller",
    "idea",
    "doubt",
    "way",
    "problem",
    "there",
    "there's",
    "it",
    "it's",
    "i",
    "i'm",
    "they",
    "they're",
    "we",
    "you",
    "he",
    "she",
    "this",
    "that",
    "these",
    "those",
    "the",
    "a",
    "an",
    "not",
    "yes",
    "but",
    "and",
    "or",
    "so",
    "sorry",
    "actually",
    "wait",
    "is",
    "are",
    "was",
    "were",
    "thanks",
    "thank",
    "i've",
    "i'd",
    "i'll",
    "my",
    "your",
}
# "a/an X" is *not* "one X" when X is one of these quantity words.
_A_NOT_ONE = {
    "few",
    "couple",
    "lot",
    "lots",
    "number",
    "total",
    "bunch",
    "handful",
    "little",
    "great",
    "good",
    "large",
    "small",
    "several",
    "variety",
    "dozen",
    "hundred",
    "thousand",
    "half",
    "pair",
    "single",
    "set",
    "group",
    "series",
    "count",
    "bit",
    "mix",
    "plenty",
    "range",
    "collection",
    "cluster",
}
_A_TRIGGERS = {"only", "just", "exactly"}

_TOKEN_RE = re.compile(
    r"""
    (?P<num>
        (?:(?<!\w)(?P<sign>[-\u2212\u2013]))?   # a sign glued to the digits at a word start
        (?<![\w.,/])(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)
        (?P<frac>\.[0-9]+|/[0-9]+)?
        (?![0-9])(?![./][0-9])                  # never stop inside "3.5" or "1/2"
        (?![^\W_])                             # no letter glued on ("3rd", "3.5cm")
    )
    | (?<!\w)(?P<word>[^\W\d_]+(?:'[^\W\d_]+)*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num" | "word"
    text: str
    start: int
    end: int
    value: int | None = None  # integer value for a valid "num" token
    invalid: bool = False  # negative / decimal / fraction digits


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


def _tokens(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _TOKEN_RE.finditer(text):
        if m.group("num") is not None:
            invalid = bool(m.group("sign") or m.group("frac"))
            value = None if invalid else int(m.group("int").replace(",", ""))
            toks.append(_Tok("num", m.group("num"), m.start(), m.end(), value, invalid))
        else:
            toks.append(_Tok("word", m.group("word"), m.start(), m.end()))
    return toks


def _gap(text: str, a: _Tok, b: _Tok) -> str:
    return text[a.end : b.start]


def _is_number_tok(t: _Tok | None) -> bool:
    return t is not None and (t.kind == "num" or t.text in NUMBER_WORDS or t.text in _TENS)


def _after_number(text: str, toks: list[_Tok], j: int, value: int) -> int | None:
    """Apply what may follow a number ending at token ``j``: multipliers and fraction markers."""
    nxt = toks[j + 1] if j + 1 < len(toks) else None
    if nxt is None:
        return value
    if nxt.kind == "word":
        if nxt.text in _MULTIPLIERS:
            return value * _MULTIPLIERS[nxt.text]
        if nxt.text in _FRACTION_WORDS:  # "one half", "two thirds"
            return None
        if nxt.text == "point" and _is_number_tok(toks[j + 2] if j + 2 < len(toks) else None):
            return None  # "three point five"
        if (
            nxt.text == "and"
            and j + 3 < len(toks)
            and toks[j + 2].text in ("a", "one")
            and toks[j + 3].text in _FRACTION_WORDS
        ):
            return None  # "3 and a half"
    elif nxt.kind == "num" and nxt.invalid and "/" in nxt.text and not _gap(text, toks[j], nxt).strip():
        return None  # "1 1/2"
    return value


def parse_count(text: str) -> int | None:
    """Return the count stated in ``text``, or ``None`` if unparsable (rules: module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"parse_count expects str, got {type(text).__name__}")
    norm = _normalise(text)
    toks = _tokens(norm)
    n = len(toks)
    for i, t in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < n else None
        prev = toks[i - 1] if i > 0 else None
        if t.kind == "num":
            if t.invalid:
                return None
            assert t.value is not None
            return _after_number(norm, toks, i, t.value)
        w = t.text
        if w in ("minus", "negative") and _is_number_tok(nxt):
            return None
        if w in _TENS:
            value, j = _TENS[w], i
            if (
                nxt is not None
                and nxt.kind == "word"
                and nxt.text in NUMBER_WORDS
                and 1 <= NUMBER_WORDS[nxt.text] <= 9
                and _gap(norm, t, nxt) in ("-", " ")
            ):
                value, j = value + NUMBER_WORDS[nxt.text], i + 1
            return _after_number(norm, toks, j, value)
        if w in NUMBER_WORDS:
            return _after_number(norm, toks, i, NUMBER_WORDS[w])
        if w == "half":
            if nxt is not None and nxt.text == "a" and i + 2 < n and toks[i + 2].text == "dozen":
                return 6
            return None
        if w in _MULTIPLIERS:  # bare "dozen" / "a dozen"
            return _MULTIPLIERS[w]
        if w in _ZERO_WORDS:
            return 0
        if w == "any" and prev is not None and (prev.text == "not" or prev.text.endswith("n't")):
            return 0
        if w == "no":
            if (
                nxt is not None
                and nxt.kind == "word"
                and _gap(norm, t, nxt)
                and not _gap(norm, t, nxt).strip(" \t")
                and nxt.text not in NUMBER_WORDS
                and nxt.text not in _NO_SKIP
            ):
                return 0
            continue  # bare "no" (a yes/no answer) or "no more than ...": not a count
        if w in ("a", "an"):
            if nxt is None or nxt.kind != "word":
                continue
            if nxt.text == "single":
                negated = prev is not None and (prev.text == "not" or prev.text.endswith("n't"))
                return 0 if negated else 1
            if nxt.text == "pair":
                return 2
            if nxt.text in _A_NOT_ONE:
                continue
            if (
                i == 0
                or (prev is not None and prev.text in _A_TRIGGERS)
                or (prev is not None and prev.text == "there's")
                or (i >= 2 and prev is not None and prev.text == "is" and toks[i - 2].text == "there")
            ):
                return 1
    return None


def count_metrics(pred_text: str, true_count: int) -> dict[str, Any]:
    """Per-sample counting metrics.

    Returns ``{"parsed": int|None, "true_count": int, "exact": 0|1, "unparsable": 0|1,
    "abs_error": float|None, "signed_error": int|None, "off_by_one": 0|1|None}``.
    Unparsable answers have ``exact == 0`` and ``None`` errors (excluded from the MAE).
    """
    if isinstance(true_count, bool) or not isinstance(true_count, int) or true_count < 0:
        raise ValueError(f"true_count must be a non-negative int, got {true_count!r}")
    parsed = parse_count(pred_text)
    if parsed is None:
        return {
            "parsed": None,
            "true_count": true_count,
            "exact": 0,
            "unparsable": 1,
            "abs_error": None,
            "signed_error": None,
            "off_by_one": None,
        }
    err = parsed - true_count
    return {
        "parsed": parsed,
        "true_count": true_count,
        "exact": int(err == 0),
        "unparsable": 0,
        "abs_error": float(abs(err)),
        "signed_error": err,
        "off_by_one": int(abs(err) == 1),
    }


def _pct(num: int, den: int) -> float | None:
    return None if den == 0 else 100.0 * num / den


def aggregate_counting(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate :func:`count_metrics` records (only ``parsed`` and ``true_count`` are read).

    Returns percentages (0-100): ``accuracy`` (exact; unparsable counts as wrong),
    ``off_by_one_rate`` and ``unparsable_rate`` over all records; ``mae`` and
    ``mean_signed_error`` (positive = over-counting) over parsable records only (``None`` when
    there are none); ``accuracy_by_true_count`` / ``n_by_true_count`` / ``mae_by_true_count``
    keyed by the true count (int keys, ascending). Rates are ``None`` for an empty corpus.
    """
    n = 0
    exact = unparsable = off1 = 0
    abs_sum = 0.0
    signed_sum = 0
    by_n: dict[int, int] = {}
    by_exact: dict[int, int] = {}
    by_abs: dict[int, list[float]] = {}
    for r in records:
        true = r["true_count"]
        parsed = r["parsed"]
        n += 1
        by_n[true] = by_n.get(true, 0) + 1
        by_exact.setdefault(true, 0)
        by_abs.setdefault(true, [])
        if parsed is None:
            unparsable += 1
            continue
        err = parsed - true
        if err == 0:
            exact += 1
            by_exact[true] += 1
        if abs(err) == 1:
            off1 += 1
        abs_sum += abs(err)
        signed_sum += err
        by_abs[true].append(float(abs(err)))
    parsable = n - unparsable
    keys = sorted(by_n)
    return {
        "n": n,
        "n_parsable": parsable,
        "accuracy": _pct(exact, n),
        "mae": (abs_sum / parsable) if parsable else None,
        "mean_signed_error": (signed_sum / parsable) if parsable else None,
        "off_by_one_rate": _pct(off1, n),
        "unparsable_rate": _pct(unparsable, n),
        "accuracy_by_true_count": {k: _pct(by_exact[k], by_n[k]) for k in keys},
        "n_by_true_count": {k: by_n[k] for k in keys},
        "mae_by_true_count": {k: (sum(by_abs[k]) / len(by_abs[k]) if by_abs[k] else None) for k in keys},
    }
