"""Dialogue probes on hand-made transcripts (mmgpt_eval.metrics.dialog)."""

from __future__ import annotations

import json
import math
import time

import pytest

from mmgpt_eval.data.dialog_spec import TurnChecks
from mmgpt_eval.metrics import dialog as d

EDGE_TEXTS = ["", "   \n\t ", "Café crème, déjà vu.", "这是一个红色的圆形。", "🙂🙂 🎉", "?!... ,,,", "a"]


# --------------------------------------------------------------------------- length


def test_word_count():
    assert d.word_count("") == 0
    assert d.word_count("  \n\t ") == 0
    assert d.word_count("  A red circle.  ") == 3
    assert d.word_count("one\ttwo\nthree\u00a0four") == 4  # unicode whitespace
    assert d.word_count("?!... ,,,") == 2  # punctuation chunks count as words
    assert d.word_count("这是一个红色的圆形。") == 1  # unsegmented CJK: one chunk
    assert d.word_count("🙂🙂 🎉") == 2


def test_response_length():
    assert d.response_length("a b c") == {"words": 3, "tokens": None}
    assert d.response_length("a b c", num_tokens=5) == {"words": 3, "tokens": 5}


def test_length_stats():
    s = d.length_stats([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s["n"] == 10 and s["mean"] == 5.5 and s["median"] == 5.5
    assert s["p10"] == pytest.approx(1.9) and s["p90"] == pytest.approx(9.1)
    assert (s["min"], s["max"]) == (1.0, 10.0)
    one = d.length_stats([4])
    assert one["p10"] == one["p90"] == one["median"] == 4.0
    empty = d.length_stats([])
    assert empty["n"] == 0 and empty["mean"] is None
    assert d.length_stats([None, 2, None])["n"] == 1


# --------------------------------------------------------------------------- collapse / empty / truncation


def test_collapsed():
    assert d.COLLAPSE_MIN_WORDS == 10
    assert d.collapsed("blue", "open") is True
    assert d.collapsed("", "open") is True
    assert d.collapsed("one two three four five six seven eight nine", "open") is True
    assert d.collapsed("one two three four five six seven eight nine ten", "open") is False
    assert d.collapsed("blue", "short") is None
    assert d.collapsed("blue", "language") is None
    assert d.collapsed("a b c", "open", min_words=3) is False


def test_collapse_applies():
    assert d.collapse_applies("open")
    assert not d.collapse_applies("short", {"min_words": 50})
    assert d.collapse_applies("language", {"min_words": 10})
    assert d.collapse_applies("language", TurnChecks(min_words=25))
    assert not d.collapse_applies("language", {"min_words": 9})
    assert not d.collapse_applies("language", None)


@pytest.mark.parametrize("text,expected", [("", True), ("  \n ", True), ("\t", True), (".", False), ("a", False)])
def test_is_empty(text, expected):
    assert d.is_empty(text) is expected


def test_truncated():
    assert d.truncated(False, 64, 64) is True
    assert d.truncated(False, 70, 64) is True
    assert d.truncated(True, 64, 64) is False  # EOS on the last allowed token
    assert d.truncated(False, 10, 64) is False  # stopped on a stop string


# --------------------------------------------------------------------------- repetition


def test_content_tokens_unicode():
    assert d.content_tokens("Café crème, DÉJÀ vu!") == ["café", "crème", "déjà", "vu"]
    assert d.content_tokens("这是圆形") == ["这", "是", "圆", "形"]
    assert d.content_tokens("abc中文def") == ["abc", "中", "文", "def"]
    assert d.content_tokens("🙂🙂 🎉") == []
    assert d.content_tokens("?!... ,,,") == []
    assert d.content_tokens("It's 3 o'clock") == ["it's", "3", "o'clock"]


def test_distinct_n():
    assert d.distinct_n("the cat the cat", 1) == pytest.approx(2 / 4)
    assert d.distinct_n("the cat the cat", 2) == pytest.approx(2 / 3)
    assert d.distinct_n("blue", 1) == 1.0
    assert d.distinct_n("blue", 2) is None  # fewer tokens than n: undefined
    assert d.distinct_n("", 1) is None
    assert d.distinct_n("?!", 1) is None
    with pytest.raises(ValueError):
        d.distinct_n("x", 0)


def test_repeated_ngram_rate():
    assert d.repeated_ngram_rate("a b c a b c") == pytest.approx(2 / 4)  # "a b c" twice of 4 trigrams
    assert d.repeated_ngram_rate("one two three four") == 0.0
    assert d.repeated_ngram_rate("one two") is None
    assert d.repeated_ngram_rate("x x x x x") == 1.0


def test_repeated_sentences():
    text = "The circle is red. The circle is red! It is big. It is big."
    assert d.repeated_sentences(text) == ["the circle is red", "it is big"]
    assert d.repeated_sentences("Yes. Yes. Yes.") == []  # under 3 words
    assert d.repeated_sentences("The cat sat. the  CAT sat") == ["the cat sat"]  # no final stop, case, spaces
    assert d.repeated_sentences("") == []
    assert d.repeated_sentences("这是圆形。这是圆形。") == []  # one CJK "word" per sentence
    assert d.repeated_sentences("A b c. A b d.") == []


# --------------------------------------------------------------------------- leakage


def test_leaked_markers():
    assert d.leaked_markers("A red circle.") == []
    assert d.leaked_markers("A red circle.\n\n### Instruction:\nWhat") == ["instruction_header"]
    assert d.leaked_markers("###instruction: x ### RESPONSE") == ["instruction_header", "response_header"]
    assert d.leaked_markers("### Image:\n<image>") == ["image_header", "image_token"]
    assert d.leaked_markers("text<|endofchunk|>") == ["endofchunk_token"]
    # special tokens are case-sensitive
    assert d.leaked_markers("<IMAGE> <|EndOfChunk|>") == []
    assert d.leaked_markers("below is an instruction that describes a task.") == ["preamble"]
    assert d.leaked_markers("The image shows") == []  # the word "image" alone is fine
    assert set(d.LEAK_MARKERS) == {
        "instruction_header",
        "response_header",
        "image_header",
        "image_token",
        "endofchunk_token",
        "preamble",
    }


# --------------------------------------------------------------------------- keywords


def test_find_term_words_and_phrases():
    assert d.find_term("A red circle.", "circle")
    assert not d.find_term("Two circles.", "circle")  # whole word
    assert d.find_term("Two circles.", "circle|circles")  # alternatives
    assert d.find_term("A RED circle", "red")
    assert not d.find_term("A reddish circle", "red")
    assert d.find_term("Then:\n###   Response here", "### Response")  # phrase, whitespace collapsed
    assert d.find_term("x ### response", "### Response")  # case-insensitive phrase
    assert d.find_term("Café crème", "CAFÉ")
    assert d.find_term("ｃａｆé", "café")  # NFKC
    assert d.find_term("text <image> text", "<image>")
    assert d.find_term("这是红色的圆形", "红色")  # CJK terms: substring (no word boundaries)
    assert not d.find_term("这是蓝色的圆形", "红色")
    assert not d.find_term("", "red")


def test_must_include_and_must_not_include():
    text = "The triangle is blue and small."
    assert d.must_include_missing(text, ["blue", "triangle|square"]) == []
    assert d.must_include_missing(text, ["red", "blue"]) == ["red"]
    assert d.must_not_include_present(text, ["### Instruction", "blue"]) == ["blue"]
    assert d.must_not_include_present(text, []) == []


def test_normalise_answer():
    assert d.normalise_answer("  The Blue!  ") == "blue"
    assert d.normalise_answer("Three.") == "3"
    assert d.normalise_answer("It's a circle") == "its circle"
    assert d.normalise_answer("") == ""
    assert d.normalise_answer("?!...") == ""
    assert d.normalise_answer("Déjà   vu") == "déjà vu"
    assert d.normalise_answer("🙂 blue 🙂") == "blue"


def test_short_answer_match():
    assert d.short_answer_match("Blue.", "blue")
    assert d.short_answer_match("The shape is blue.", "blue")
    assert d.short_answer_match("Three", "3")
    assert d.short_answer_match("There are three circles.", "3")
    assert d.short_answer_match("Buenos días", "buenos días")
    assert not d.short_answer_match("Bluish.", "blue")
    assert not d.short_answer_match("", "blue")
    # containment only in a short answer (<= 8 words)
    long = "I think that the colour of this shape is probably blue"
    assert d.word_count(long) > d.SHORT_ANSWER_MAX_WORDS
    assert not d.short_answer_match(long, "blue")
    assert d.short_answer_match(long, "blue", max_words=20)
    with pytest.raises(ValueError):
        d.short_answer_match("x", "?!")


def test_carry_over_pass():
    assert d.carry_over_pass("Your cats are Pepper and Miso.", ["Pepper", "Miso"])
    assert not d.carry_over_pass("Your cat is Pepper.", ["Pepper", "Miso"])
    assert d.carry_over_pass("anything", [])


# --------------------------------------------------------------------------- grounding


def test_grounding():
    assert not d.grounding_changed("Blue.", "blue")
    assert not d.grounding_changed("The blue", "blue!")
    assert d.grounding_changed("blue", "red")
    assert not d.grounding_changed("", "  ")
    g = d.grounding_probes("blue", answer_blank="white", answer_other="Blue")
    assert g == {"grounding_changed_blank": True, "grounding_changed_other": False}
    assert d.grounding_probes("blue") == {"grounding_changed_blank": None, "grounding_changed_other": None}
    # an image-blind model answers the same everywhere and scores 0
    assert d.grounding_rate([("a red circle", "A red circle."), ("3", "three")]) == 0.0
    assert d.grounding_rate([("red", "blue"), ("3", "3")]) == 50.0
    assert d.grounding_rate([]) is None


# --------------------------------------------------------------------------- turn_probes


def test_turn_probes_open_collapsed():
    r = d.turn_probes("Blue.", kind="open", turn_index=0, num_new_tokens=3, max_new_tokens=64, stopped_on_eos=True)
    assert r["kind"] == "open" and r["turn_index"] == 0
    assert r["words"] == 1 and r["tokens"] == 3
    assert r["collapsed"] is True and r["empty"] is False
    assert r["truncated"] is False and r["stopped_on_eos"] is True
    assert r["distinct_1"] == 1.0 and r["distinct_2"] is None and r["repeated_3gram_rate"] is None
    assert r["template_leak"] is False and r["leak_image_token"] is False
    assert r["checks_pass"] is None  # no checks
    for k in ("must_include_pass", "short_answer_match", "count_exact", "carry_over_pass"):
        assert r[k] is None


def test_turn_probes_checks_short_and_count():
    checks = {"expect_short_answer": "blue", "max_words": 3}
    r = d.turn_probes("Blue.", kind="short", checks=checks)
    assert r["collapsed"] is None
    assert r["short_answer_match"] is True and r["max_words_pass"] is True and r["checks_pass"] is True
    r = d.turn_probes(
        "It is a blue triangle shape.", kind="short", checks=TurnChecks(expect_short_answer="blue", max_words=3)
    )
    assert r["short_answer_match"] is True and r["max_words_pass"] is False and r["checks_pass"] is False
    r = d.turn_probes("There are three circles.", kind="short", checks={"expect_count": 3})
    assert r["count_parsed"] == 3 and r["count_exact"] is True
    r = d.turn_probes("No idea.", kind="short", checks={"expect_count": 0})
    assert r["count_parsed"] is None and r["count_exact"] is False


def test_turn_probes_carry_over_and_leak():
    checks = TurnChecks(refers_back_to=0, must_include=("Pepper", "Miso"))
    r = d.turn_probes("Pepper and Miso.\n### Instruction: more", kind="language", checks=checks, turn_index=1)
    assert r["carry_over_pass"] is True and r["must_include_pass"] is True
    assert r["template_leak"] is True and r["leak_instruction_header"] is True
    r = d.turn_probes("Pepper.", kind="language", checks=checks, turn_index=1)
    assert r["carry_over_pass"] is False and r["checks_pass"] is False


def test_turn_probes_long_language_collapse_and_min_words():
    checks = {"min_words": 20, "must_not_include": ["<image>"]}
    r = d.turn_probes("The ocean.", kind="language", checks=checks)
    assert r["collapsed"] is True and r["min_words_pass"] is False and r["must_not_include_pass"] is True
    r = d.turn_probes("The ocean.", kind="language", checks={"max_words": 5})
    assert r["collapsed"] is None


def test_turn_probes_truncation_and_repetition():
    text = "The circle is red. " * 30
    r = d.turn_probes(text, kind="open", num_new_tokens=128, max_new_tokens=128, stopped_on_eos=False)
    assert r["truncated"] is True and r["stopped_on_eos"] is False
    assert r["repeated_sentence"] is True
    assert r["repeated_3gram_rate"] == 1.0
    assert r["distinct_1"] == pytest.approx(4 / 120)
    r = d.turn_probes("x", kind="open")
    assert r["truncated"] is None and r["stopped_on_eos"] is None and r["tokens"] is None


@pytest.mark.parametrize("text", EDGE_TEXTS)
@pytest.mark.parametrize("kind", d.KINDS)
def test_turn_probes_edge_cases(text, kind):
    checks = {
        "must_include": ["red"],
        "must_not_include": ["### Response"],
        "expect_short_answer": "red",
        "expect_count": 1,
        "max_words": 3,
        "min_words": 1,
        "refers_back_to": 0,
    }
    r = d.turn_probes(
        text, kind=kind, checks=checks, turn_index=1, num_new_tokens=0, max_new_tokens=8, stopped_on_eos=True
    )
    json.dumps(r)
    assert not any(isinstance(v, float) and math.isnan(v) for v in r.values())
    assert r["empty"] is (not text.strip())
    if not text.strip():
        assert r["words"] == 0 and r["min_words_pass"] is False and r["distinct_1"] is None
        assert r["must_include_pass"] is False and r["carry_over_pass"] is False
    if kind == "open":
        assert r["collapsed"] is True


def test_turn_probes_2000_words_is_fast():
    words = [f"w{i % 700}" for i in range(2000)]
    text = " ".join(words[:1000]) + ". " + " ".join(words[1000:]) + "."
    t = time.perf_counter()
    r = d.turn_probes(
        text,
        kind="open",
        checks={"must_include": ["w5"], "min_words": 100, "expect_short_answer": "w1", "expect_count": 3},
    )
    elapsed = time.perf_counter() - t
    assert r["words"] == 2000 and r["collapsed"] is False and r["short_answer_match"] is False
    assert 0 < r["distinct_1"] < 1
    assert elapsed < 0.5, elapsed


def test_turn_probes_rejects_bad_input():
    with pytest.raises(ValueError):
        d.turn_probes("x", kind="vision")
    with pytest.raises(TypeError):
        d.turn_probes(None, kind="open")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- aggregate


def _records():
    recs = [
        d.turn_probes("Blue.", kind="open", turn_index=0, num_new_tokens=2, max_new_tokens=64, stopped_on_eos=True),
        d.turn_probes(
            "The image shows one blue triangle on a pale background, near the bottom edge.",
            kind="open",
            turn_index=0,
            num_new_tokens=20,
            max_new_tokens=64,
            stopped_on_eos=True,
        ),
        d.turn_probes(
            "blue",
            kind="short",
            checks={"expect_short_answer": "blue"},
            turn_index=1,
            num_new_tokens=64,
            max_new_tokens=64,
            stopped_on_eos=False,
        ),
        d.turn_probes("", kind="language", checks={"min_words": 15}, turn_index=1),
        d.turn_probes(
            "You asked me to describe it. ### Response",
            kind="language",
            checks={"refers_back_to": 0, "must_include": ["describe"]},
            turn_index=2,
        ),
    ]
    return recs


def test_aggregate_probes():
    agg = d.aggregate_probes(
        _records(),
        [
            d.grounding_probes("blue", "white", "red"),
            d.grounding_probes("blue", "blue", None),
        ],
    )
    o = agg["overall"]
    assert o["n"] == 5
    assert o["words"]["n"] == 5 and o["words"]["median"] == 1.0
    assert o["tokens"]["n"] == 3
    assert o["turn_empty_rate"] == pytest.approx(20.0)
    assert o["turn_collapse_rate"] == pytest.approx(100 * 2 / 3)  # 2 open turns + 1 long language turn
    assert o["turn_eos_rate"] == pytest.approx(100 * 2 / 3)
    assert o["turn_truncation_rate"] == pytest.approx(100 / 3)
    assert o["turn_template_leak_rate"] == pytest.approx(20.0)
    assert o["leak_response_header_rate"] == pytest.approx(20.0)
    assert o["short_answer_match_rate"] == 100.0
    assert o["carry_over_pass_rate"] == 100.0
    assert o["min_words_pass_rate"] == 0.0
    assert o["count_exact_rate"] is None
    assert o["checks_pass_rate"] == pytest.approx(100 * 2 / 3)
    assert 0 < o["mean_distinct_1"] <= 1
    assert set(agg["by_kind"]) == {"open", "short", "language"}
    assert agg["by_kind"]["open"]["n"] == 2 and agg["by_kind"]["open"]["turn_collapse_rate"] == 50.0
    assert agg["by_kind"]["short"]["turn_collapse_rate"] is None
    assert sorted(agg["by_turn"]) == [0, 1, 2]
    assert agg["by_turn"][2]["n"] == 1
    g = agg["grounding"]
    assert g["n"] == 2 and g["changed_blank_rate"] == 50.0 and g["changed_other_rate"] == 100.0
    assert g["grounding_rate"] == pytest.approx(100 * 2 / 3)
    json.dumps(agg)


def test_aggregate_probes_empty():
    agg = d.aggregate_probes([])
    assert agg["overall"]["n"] == 0 and agg["overall"]["turn_collapse_rate"] is None
    assert agg["by_turn"] == {} and agg["grounding"]["grounding_rate"] is None
    assert all(agg["by_kind"][k]["n"] == 0 for k in d.KINDS)
