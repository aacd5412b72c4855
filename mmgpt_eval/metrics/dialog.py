"""Dialogue probes: pure functions over transcripts (they never see a model).

They measure what the MultiModal-GPT paper claims about instruction data: training on short
answers makes a model answer shortly to everything (*short-answer collapse*); joint training
with language-only instructions in the same template fixes it; the model follows counting and
other constrained instructions, carries context across turns and looks at the image.

Conventions
-----------
* **Words** (:func:`word_count`): ``len(text.strip().split())`` - Unicode whitespace split, so
  punctuation-only text is 1 word per chunk and unsegmented CJK text is one word per chunk.
* **Tokens for repetition** (:func:`content_tokens`): NFKC + casefold, then runs of letters/digits
  (with inner apostrophes); every CJK ideograph / kana character is its own token; punctuation
  and emoji are dropped.
* **Per-turn values** are booleans, counts or fractions in [0, 1]. ``None`` means "does not
  apply" (e.g. distinct-2 of a one-token answer, collapse of a short-answer turn) and is left out
  of every aggregate.
* **Aggregated rates** (:func:`aggregate_probes`) are percentages 0-100 over the turns where the
  probe applies (``None`` when it applies nowhere), like the counting metrics; per-turn
  fractions (distinct-n, repeated 3-gram rate) are averaged and stay in [0, 1].

Short-answer collapse: an open-ended turn (kind ``open``, or a ``language`` turn whose checks ask
for ``min_words >= COLLAPSE_MIN_WORDS``) answered with fewer than ``COLLAPSE_MIN_WORDS`` = 10
words. 10 words is about one short sentence: a real description can't be that short, while the
collapsed answers the paper shows ("blue", "a red circle") are 1-4 words.

Keyword matching (:func:`find_term`): NFKC + casefold on both sides. A term without whitespace
matches as a whole word (``(?<!\\w)term(?!\\w)``: "circle" matches "circle." but not "circles");
a term with whitespace (a phrase) or with CJK characters (no word boundaries to rely on) matches
as a substring after collapsing runs of whitespace.
A term may list alternatives separated by ``|`` ("circle|circles|round"): any one matches.

Expected short answer (:func:`short_answer_match`): both sides normalised (NFKC, casefold,
punctuation -> space, number words zero..twenty -> digits, articles a/an/the dropped, whitespace
collapsed). Match iff the normalised answer equals the normalised expectation, or the response
has at most ``SHORT_ANSWER_MAX_WORDS`` = 8 words and contains the expectation as whole words.

Template leakage (:func:`leaked_markers`): the special tokens ``<image>`` and ``<|endofchunk|>``
are matched exactly (case-sensitive: only those strings are tokens); the section headers
``### Instruction``, ``### Response``, ``### Image`` case-insensitively with any spaces after
the hashes (``###instruction:`` leaks too); and the prompt's preamble sentence "Below is an
instruction that describes a task" case-insensitively.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# keyword search and answer normalisation are shared with the probe-file validation (mmgpt_eval.data.dialog_spec)
from ..textmatch import CJK, check_str, find_term, fold, normalise_answer

__all__ = [
    "COLLAPSE_MIN_WORDS",
    "SHORT_ANSWER_MAX_WORDS",
    "KINDS",
    "LEAK_MARKERS",
    "word_count",
    "response_length",
    "length_stats",
    "collapse_applies",
    "collapsed",
    "is_empty",
    "truncated",
    "content_tokens",
    "distinct_n",
    "repeated_ngram_rate",
    "repeated_sentences",
    "leaked_markers",
    "find_term",
    "must_include_missing",
    "must_not_include_present",
    "normalise_answer",
    "short_answer_match",
    "carry_over_pass",
    "grounding_changed",
    "grounding_probes",
    "grounding_rate",
    "turn_probes",
    "aggregate_probes",
    "CONVERSATION_METRICS",
    "conversation_metrics",
    "aggregate_conversations",
    "reference_similarity",
]

COLLAPSE_MIN_WORDS = 10
SHORT_ANSWER_MAX_WORDS = 8
KINDS = ("open", "short", "language")

# name -> the marker as it appears in the prompt; leaked markers are reported in this order.
LEAK_MARKERS: dict[str, str] = {
    "instruction_header": "### Instruction",
    "response_header": "### Response",
    "image_header": "### Image",
    "image_token": "<image>",
    "endofchunk_token": "<|endofchunk|>",
    "preamble": "Below is an instruction that describes a task",
}
_LEAK_RE: dict[str, re.Pattern[str]] = {
    "instruction_header": re.compile(r"###\s*instruction\b", re.IGNORECASE),
    "response_header": re.compile(r"###\s*response\b", re.IGNORECASE),
    "image_header": re.compile(r"###\s*image\b", re.IGNORECASE),
    "image_token": re.compile(re.escape("<image>")),
    "endofchunk_token": re.compile(re.escape("<|endofchunk|>")),
    "preamble": re.compile(r"below\s+is\s+an\s+instruction\s+that\s+describes\s+a\s+task", re.IGNORECASE),
}

_TOKEN_RE = re.compile(rf"[{CJK}]|(?:(?![{CJK}])[^\W_])+(?:'(?:(?![{CJK}])[^\W_])+)*")
_SENT_SPLIT_RE = re.compile(r"[.!?\u3002\uff01\uff1f]+")


# --------------------------------------------------------------------------- length


def word_count(text: str) -> int:
    """Whitespace-separated words after strip (``""`` and ``"  "`` have 0)."""
    return len(check_str(text).split())


def response_length(text: str, num_tokens: int | None = None) -> dict[str, int | None]:
    """``{"words": int, "tokens": int | None}`` (tokens as counted by the caller's tokenizer)."""
    return {"words": word_count(text), "tokens": None if num_tokens is None else int(num_tokens)}


def _percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default ``linear`` method)."""
    if len(sorted_xs) == 1:
        return float(sorted_xs[0])
    pos = (len(sorted_xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return float(sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo))


def length_stats(values: Iterable[float | int | None]) -> dict[str, float | int | None]:
    """``n, mean, median, p10, p90, min, max`` of the non-``None`` values (all ``None`` if n=0)."""
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return {"n": 0, "mean": None, "median": None, "p10": None, "p90": None, "min": None, "max": None}
    return {
        "n": len(xs),
        "mean": sum(xs) / len(xs),
        "median": float(statistics.median(xs)),
        "p10": _percentile(xs, 0.10),
        "p90": _percentile(xs, 0.90),
        "min": xs[0],
        "max": xs[-1],
    }


# --------------------------------------------------------------------------- collapse / empty / truncation


def collapse_applies(kind: str, checks: Any = None) -> bool:
    """Open-ended turns: kind ``open``, or ``language`` with ``min_words >= COLLAPSE_MIN_WORDS``."""
    if kind == "open":
        return True
    min_words = _get(checks, "min_words")
    return kind == "language" and min_words is not None and min_words >= COLLAPSE_MIN_WORDS


def collapsed(text: str, kind: str, min_words: int = COLLAPSE_MIN_WORDS) -> bool | None:
    """True if an ``open`` turn got fewer than ``min_words`` words; ``None`` for other kinds.

    (Use :func:`turn_probes` to also cover long-form ``language`` turns, see
    :func:`collapse_applies`.)
    """
    if kind != "open":
        return None
    return word_count(text) < min_words


def is_empty(text: str) -> bool:
    """Empty or whitespace-only."""
    return not check_str(text).strip()


def truncated(stopped_on_eos: bool, num_new_tokens: int, max_new_tokens: int) -> bool:
    """Generation ran into ``max_new_tokens`` without stopping on EOS.

    A generation that stopped early for another reason (a stop string) is not truncated.
    """
    return (not stopped_on_eos) and num_new_tokens >= max_new_tokens


# --------------------------------------------------------------------------- repetition


def content_tokens(text: str) -> list[str]:
    """Lower-cased word tokens for n-gram statistics (see the module docstring)."""
    return _TOKEN_RE.findall(fold(check_str(text)))


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(text: str, n: int) -> float | None:
    """Unique n-grams / total n-grams; ``None`` when the text has fewer than ``n`` tokens."""
    if n < 1:
        raise ValueError("n must be >= 1")
    grams = _ngrams(content_tokens(text), n)
    if not grams:
        return None
    return len(set(grams)) / len(grams)


def repeated_ngram_rate(text: str, n: int = 3) -> float | None:
    """Fraction of n-gram occurrences whose n-gram occurs more than once; ``None`` if no n-grams."""
    grams = _ngrams(content_tokens(text), n)
    if not grams:
        return None
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


def repeated_sentences(text: str, min_words: int = 3) -> list[str]:
    """Sentences of ``>= min_words`` words that occur at least twice verbatim.

    Sentences are split on runs of ``. ! ?`` (and the CJK full stops); each is compared after
    casefolding and collapsing whitespace. Returned once each, in order of first occurrence.
    """
    seen: Counter[str] = Counter()
    order: list[str] = []
    for raw in _SENT_SPLIT_RE.split(fold(check_str(text))):
        s = " ".join(raw.split())
        if len(s.split()) < min_words:
            continue
        if s not in seen:
            order.append(s)
        seen[s] += 1
    return [s for s in order if seen[s] > 1]


# --------------------------------------------------------------------------- template leakage


def leaked_markers(text: str) -> list[str]:
    """Names (keys of ``LEAK_MARKERS``) of prompt-template markers found in ``text``."""
    check_str(text)
    return [name for name, rx in _LEAK_RE.items() if rx.search(text)]


# --------------------------------------------------------------------------- keywords


def must_include_missing(text: str, terms: Iterable[str]) -> list[str]:
    """Terms of ``terms`` that do not occur in ``text`` (empty list = pass)."""
    return [t for t in terms if not find_term(text, t)]


def must_not_include_present(text: str, terms: Iterable[str]) -> list[str]:
    """Terms of ``terms`` that occur in ``text`` (empty list = pass)."""
    return [t for t in terms if find_term(text, t)]


def short_answer_match(text: str, expected: str, max_words: int = SHORT_ANSWER_MAX_WORDS) -> bool:
    """Normalised exact match, or whole-word containment in a response of <= ``max_words`` words."""
    a, e = normalise_answer(text), normalise_answer(expected)
    if not e:
        raise ValueError("expected answer is empty after normalisation")
    if a == e:
        return True
    if word_count(text) > max_words:
        return False
    return re.search(rf"(?<!\S){re.escape(e)}(?!\S)", a) is not None


def carry_over_pass(text: str, keywords: Iterable[str]) -> bool:
    """Context carry-over: every keyword stated in the earlier turn appears in the answer."""
    return not must_include_missing(text, keywords)


# --------------------------------------------------------------------------- grounding


def grounding_changed(answer_real: str, answer_other: str) -> bool:
    """The answer with the real image differs (after :func:`normalise_answer`) from the other."""
    return normalise_answer(answer_real) != normalise_answer(answer_other)


def grounding_probes(
    answer_real: str, answer_blank: str | None = None, answer_other: str | None = None
) -> dict[str, bool | None]:
    """``{"grounding_changed_blank", "grounding_changed_other"}``; ``None`` where not asked."""
    return {
        "grounding_changed_blank": None if answer_blank is None else grounding_changed(answer_real, answer_blank),
        "grounding_changed_other": None if answer_other is None else grounding_changed(answer_real, answer_other),
    }


def grounding_rate(pairs: Iterable[tuple[str, str]]) -> float | None:
    """Percentage of ``(answer_real, answer_other)`` pairs whose answers changed (blind model: 0)."""
    flags = [grounding_changed(a, b) for a, b in pairs]
    return _rate(flags)


# --------------------------------------------------------------------------- per turn


def _get(checks: Any, name: str) -> Any:
    if checks is None:
        return None
    if isinstance(checks, Mapping):
        return checks.get(name)
    return getattr(checks, name, None)


def turn_probes(
    response: str,
    *,
    kind: str,
    checks: Any = None,
    turn_index: int = 0,
    num_new_tokens: int | None = None,
    max_new_tokens: int | None = None,
    stopped_on_eos: bool | None = None,
    collapse_min_words: int = COLLAPSE_MIN_WORDS,
) -> dict[str, Any]:
    """Every probe that applies to one model turn.

    ``checks`` is a ``TurnChecks`` (mmgpt_eval.data.dialog_spec) or a mapping with the same keys
    (``must_include``, ``must_not_include``, ``expect_short_answer``, ``expect_count``,
    ``refers_back_to``, ``max_words``, ``min_words``). Keys in the result (``None`` = n/a):

    ``kind`` (str), ``turn_index``, ``words``, ``tokens``, ``empty``, ``collapsed``,
    ``stopped_on_eos``, ``truncated``, ``distinct_1``, ``distinct_2``, ``repeated_3gram_rate``,
    ``repeated_sentence``, ``template_leak``, ``leak_<marker>`` for each ``LEAK_MARKERS`` name,
    ``must_include_pass``, ``must_not_include_pass``, ``short_answer_match``, ``count_exact``,
    ``count_parsed``, ``max_words_pass``, ``min_words_pass``, ``carry_over_pass`` and
    ``checks_pass`` (all applicable checks passed).
    """
    from .counting import parse_count

    check_str(response, "response")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    words = word_count(response)
    leaks = leaked_markers(response)
    rec: dict[str, Any] = {
        "kind": kind,
        "turn_index": int(turn_index),
        "words": words,
        "tokens": None if num_new_tokens is None else int(num_new_tokens),
        "empty": is_empty(response),
        "collapsed": (words < collapse_min_words) if collapse_applies(kind, checks) else None,
        "stopped_on_eos": None if stopped_on_eos is None else bool(stopped_on_eos),
        "truncated": None,
        "distinct_1": distinct_n(response, 1),
        "distinct_2": distinct_n(response, 2),
        "repeated_3gram_rate": repeated_ngram_rate(response, 3),
        "repeated_sentence": bool(repeated_sentences(response)),
        "template_leak": bool(leaks),
    }
    if stopped_on_eos is not None and num_new_tokens is not None and max_new_tokens is not None:
        rec["truncated"] = truncated(stopped_on_eos, num_new_tokens, max_new_tokens)
    for name in LEAK_MARKERS:
        rec[f"leak_{name}"] = name in leaks

    must = list(_get(checks, "must_include") or ())
    must_not = list(_get(checks, "must_not_include") or ())
    expect = _get(checks, "expect_short_answer")
    expect_count = _get(checks, "expect_count")
    max_words = _get(checks, "max_words")
    min_words = _get(checks, "min_words")
    refers = _get(checks, "refers_back_to")

    rec["must_include_pass"] = (not must_include_missing(response, must)) if must else None
    rec["must_not_include_pass"] = (not must_not_include_present(response, must_not)) if must_not else None
    rec["short_answer_match"] = short_answer_match(response, expect) if expect is not None else None
    if expect_count is not None:
        parsed = parse_count(response)
        rec["count_parsed"] = parsed
        rec["count_exact"] = parsed == expect_count
    else:
        rec["count_parsed"] = None
        rec["count_exact"] = None
    rec["max_words_pass"] = (words <= max_words) if max_words is not None else None
    rec["min_words_pass"] = (words >= min_words) if min_words is not None else None
    rec["carry_over_pass"] = carry_over_pass(response, must) if refers is not None and must else None
    applicable = [rec[k] for k in _CHECK_KEYS if rec[k] is not None]
    rec["checks_pass"] = all(applicable) if applicable else None
    return rec


_CHECK_KEYS = (
    "must_include_pass",
    "must_not_include_pass",
    "short_answer_match",
    "count_exact",
    "max_words_pass",
    "min_words_pass",
    "carry_over_pass",
)
_RATE_KEYS = (
    ("empty", "collapsed", "stopped_on_eos", "truncated", "repeated_sentence", "template_leak")
    + tuple(f"leak_{n}" for n in LEAK_MARKERS)
    + _CHECK_KEYS
    + ("checks_pass",)
)
_MEAN_KEYS = ("distinct_1", "distinct_2", "repeated_3gram_rate")


def _rate(flags: Iterable[bool | None]) -> float | None:
    xs = [bool(f) for f in flags if f is not None]
    return None if not xs else 100.0 * sum(xs) / len(xs)


def _mean(values: Iterable[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return None if not xs else sum(xs) / len(xs)


def _summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(records)}
    out["words"] = length_stats(r.get("words") for r in records)
    out["tokens"] = length_stats(r.get("tokens") for r in records)
    for k in _RATE_KEYS:
        name = {
            "stopped_on_eos": "turn_eos_rate",
            "collapsed": "turn_collapse_rate",
            "empty": "turn_empty_rate",
            "truncated": "turn_truncation_rate",
            "template_leak": "turn_template_leak_rate",
        }.get(k, f"{k}_rate")
        out[name] = _rate(r.get(k) for r in records)
    for k in _MEAN_KEYS:
        out[f"mean_{k}"] = _mean(r.get(k) for r in records)
    return out


def aggregate_probes(
    turn_records: Iterable[Mapping[str, Any]],
    grounding_records: Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Aggregate :func:`turn_probes` records overall, per kind and per turn index.

    Returns ``{"overall": S, "by_kind": {kind: S}, "by_turn": {index: S}, "grounding": G}``
    where ``S`` has ``n``, ``words``/``tokens`` (:func:`length_stats`), ``<probe>_rate``
    percentages of turns (``turn_empty_rate``, ``turn_collapse_rate``, ``turn_eos_rate``,
    ``turn_truncation_rate``, ``turn_template_leak_rate``: ``turn_`` because the task's headline
    metrics of the same probes count conversations), ``repeated_sentence_rate``, ``leak_<marker>_rate``, one per check,
    ``checks_pass_rate``) and ``mean_distinct_1`` / ``mean_distinct_2`` /
    ``mean_repeated_3gram_rate``. ``by_kind`` always has the three kinds (``n`` may be 0).
    ``G`` (from :func:`grounding_probes` records) has ``n``, ``changed_blank_rate``,
    ``changed_other_rate`` and ``grounding_rate`` (changed vs either image, pooled).
    """
    records = list(turn_records)
    by_kind = {k: _summarise([r for r in records if r.get("kind") == k]) for k in KINDS}
    turns = sorted({int(r.get("turn_index", 0)) for r in records})
    by_turn = {t: _summarise([r for r in records if int(r.get("turn_index", 0)) == t]) for t in turns}
    g = list(grounding_records or ())
    blank = [r.get("grounding_changed_blank") for r in g]
    other = [r.get("grounding_changed_other") for r in g]
    grounding = {
        "n": len(g),
        "changed_blank_rate": _rate(blank),
        "changed_other_rate": _rate(other),
        "grounding_rate": _rate(blank + other),
    }
    return {"overall": _summarise(records), "by_kind": by_kind, "by_turn": by_turn, "grounding": grounding}


# --------------------------------------------------------------------------- per conversation
# The dialogue task's headline metrics, one value per conversation (the sample of paired statistics):
# metric name -> (key in conversation_metrics(), higher is better, scale, unit, description)
CONVERSATION_METRICS: dict[str, tuple[str, bool, float, str, str]] = {
    "open_words_mean": ("open_words", True, 1.0, " words", "mean response length on open-ended instructions"),
    "conv_collapse_rate": (
        "collapsed",
        False,
        100.0,
        "%",
        "per conversation, the share of its open-ended turns answered in < 10 words; mean over conversations",
    ),
    "checks_pass_rate": ("checks_pass", True, 100.0, "%", "turns passing all their checks"),
    "short_answer_rate": ("short_answer", True, 100.0, "%", "short-answer / counting turns answered correctly"),
    "carry_over_rate": ("carry_over", True, 100.0, "%", "turns that must refer back to an earlier turn and do"),
    "language_pass_rate": ("language_pass", True, 100.0, "%", "language-only instructions passing their checks"),
    "conv_leak_rate": (
        "leak",
        False,
        100.0,
        "%",
        "conversations with a response containing ### markers, <image> or <|endofchunk|>",
    ),
    "conv_empty_rate": ("empty", False, 100.0, "%", "conversations with an empty response"),
    "conv_truncation_rate": (
        "truncated",
        False,
        100.0,
        "%",
        "per conversation, the share of its responses cut off at max_new_tokens; mean over conversations",
    ),
    "conv_eos_rate": (
        "eos",
        True,
        100.0,
        "%",
        "per conversation, the share of its responses that stopped on EOS; mean over conversations",
    ),
    "distinct_2": ("distinct_2", True, 1.0, "", "distinct bigrams / bigrams"),
    "repeated_3gram_rate": ("repeated_3gram", False, 100.0, "%", "3-grams occurring more than once"),
    "grounding_rate": (
        "grounding_changed",
        True,
        100.0,
        "%",
        "turn-0 answers that change with a blank / other image (image-blind model: 0)",
    ),
}


def _frac(flags: list[Any]) -> float | None:
    xs = [bool(f) for f in flags if f is not None]
    return None if not xs else sum(xs) / len(xs)


def conversation_metrics(turns: list[dict[str, Any]], grounding: dict[str, Any] | None) -> dict[str, Any]:
    """One conversation's values of :data:`CONVERSATION_METRICS` (fractions in [0, 1], ``None`` where no
    turn applies) from its :func:`turn_probes` records and :func:`grounding_probes` record, with both
    kept under ``turns`` and ``grounding``."""
    short = [
        t["short_answer_match"] if t["short_answer_match"] is not None else t["count_exact"]
        for t in turns
        if t["kind"] == "short"
    ]
    return {
        "open_words": _mean([t["words"] for t in turns if t["kind"] == "open"]),
        "collapsed": _frac([t["collapsed"] for t in turns]),
        "checks_pass": _frac([t["checks_pass"] for t in turns]),
        "short_answer": _frac(short),
        "carry_over": _frac([t["carry_over_pass"] for t in turns]),
        "language_pass": _frac([t["checks_pass"] for t in turns if t["kind"] == "language"]),
        "leak": int(any(t["template_leak"] for t in turns)),
        "empty": int(any(t["empty"] for t in turns)),
        "truncated": _frac([t["truncated"] for t in turns]),
        "eos": _frac([t["stopped_on_eos"] for t in turns]),
        "distinct_2": _mean([t["distinct_2"] for t in turns]),
        "repeated_3gram": _mean([t["repeated_3gram_rate"] for t in turns]),
        "grounding_changed": None
        if grounding is None
        else _frac([grounding.get("grounding_changed_blank"), grounding.get("grounding_changed_other")]),
        "turns": turns,
        "grounding": grounding,
    }


def _str_keys(obj: Any) -> Any:
    """Dict keys as strings, all the way down (JSON object keys)."""
    if isinstance(obj, dict):
        return {str(k): _str_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_str_keys(v) for v in obj]
    return obj


def aggregate_conversations(per_conversation: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The corpus values of :data:`CONVERSATION_METRICS` (scaled means over the conversations where a value
    applies, 4 decimals) plus ``open_median_words`` (pooled over open-ended turns), and the pooled-turn
    summary of :func:`aggregate_probes` with string keys. ``per_conversation``: the
    :func:`conversation_metrics` dicts."""
    metrics: dict[str, Any] = {}
    for name, (key, _, scale, _, _) in CONVERSATION_METRICS.items():
        vals = [m[key] for m in per_conversation if m.get(key) is not None]
        metrics[name] = round(scale * sum(vals) / len(vals), 4) if vals else None
    turn_records = [t for m in per_conversation for t in m["turns"]]
    open_words = [t["words"] for t in turn_records if t["kind"] == "open"]
    metrics["open_median_words"] = float(statistics.median(open_words)) if open_words else None
    grounding = [m["grounding"] for m in per_conversation if m.get("grounding")]
    return metrics, _str_keys(aggregate_probes(turn_records, grounding))


def reference_similarity(records: list[dict[str, Any]]) -> float | None:
    """Mean cosine similarity between responses and reference answers (all-MiniLM-L6-v2 from the packaged
    weights, offline; :mod:`mmgpt_eval.metrics.semantic`), over every turn that has a reference.
    ``records``: per-sample records with ``references`` (one dict per turn) and ``outputs`` (``t<k>``)."""
    from .semantic import semantic_similarity

    pairs = []
    for r in records:
        refs = r["references"]
        outs = r.get("outputs") or {}
        for k, ref in enumerate(refs):
            if ref.get("reference") and f"t{k}" in outs:
                pairs.append((outs[f"t{k}"]["prediction"], ref["reference"]))
    if not pairs:
        return None
    sims = semantic_similarity([p for p, _ in pairs], [r for _, r in pairs])
    return round(sum(sims) / len(sims), 4)
