"""VQA accuracy: golden values derived by hand from the official semantics (GT-Vision-Lab/VQA
vqaEval.py a013f00) and OpenFlamingo's variant, fast == reference, and input validation."""

from __future__ import annotations

import copy
import random

import pytest

from mmgpt_eval.errors import UserError
from mmgpt_eval.metrics.vqa import (
    CONTRACTIONS,
    PUNCTUATION,
    VQAScores,
    clean_answer,
    normalize_official,
    normalize_openflamingo,
    process_digit_article,
    process_punctuation,
    score_vqa,
    vqa_accuracy,
)
from mmgpt_eval_dev.vqa_reference import score_vqa_reference, vqa_accuracy_reference

BOTH = ("official", "openflamingo")


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3.5", "3.5"),  # period followed by a digit is kept
        ("a.", "a"),  # period not followed by a digit is removed
        ("3.5.", "3.5"),
        ("e.g.", "eg"),
        ("10:30", "10:30"),  # ':' is not in the punctuation list
        ("it's", "it's"),  # nor is the apostrophe
        ("1,000", "1000"),  # digit-comma-digit: marks are deleted
        ("1,000 (approx)", "1000 approx"),  # ... ALL marks, not only the comma
        ("red,blue", "red blue"),  # a mark not touching a space becomes a space
        ("red, blue", "red blue"),  # a mark touching a space is deleted
        ("hello/world", "hello world"),
        ("hello / world", "hello  world"),
        ("(yes)", " yes "),
        ("yes!", "yes "),
        ("x" + "." * 40, "x" + "." * 8),  # re.UNICODE passed as count: only 32 periods go
        ("u.s.a.", "usa"),
    ],
)
def test_process_punctuation(text, expected):
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Two Dogs", "2 dogs"),
        ("none", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("the cat", "cat"),
        ("an apple a day", "apple day"),
        ("The ten", "10"),
        ("dont", "don't"),
        ("whats   that", "what's that"),
        ("Im", "im"),  # capitalised contraction keys never match (text is lower-cased)
        ("somebody'd", "somebodyd"),  # the map's reversed entry
        ("  a  ", ""),
    ],
)
def test_process_digit_article(text, expected):
    assert process_digit_article(text) == expected


def test_tables():
    assert len(PUNCTUATION) == 21 and ":" not in PUNCTUATION and "'" not in PUNCTUATION
    assert len(CONTRACTIONS) == 120


def test_normalize_functions():
    assert clean_answer("\tyes\n ") == "yes"
    assert clean_answer("a\nb\tc") == "a b c"
    assert normalize_official("The Dog's bowl, isnt it?") == "dog's bowl isn't it"
    assert normalize_official("  Two.\n") == "2"
    assert normalize_openflamingo("  Two.\n") == "2"
    # cleaning comes first: "x-y\n-" -> "x-y -" (" -" present, so every "-" is deleted)
    assert normalize_official("x-y\n-") == "xy"


# ---------------------------------------------------------------------------------------------
# Per-question accuracy
# ---------------------------------------------------------------------------------------------


def test_disagreement_quirk():
    gts = ["yes"] * 10
    assert vqa_accuracy("Yes", gts, "official") == 0.0  # all agree: nothing normalised
    assert vqa_accuracy("Yes", gts, "openflamingo") == 1.0
    assert vqa_accuracy("yes", gts, "official") == 1.0
    assert vqa_accuracy("\tyes\n", gts, "official") == 1.0  # cleaning always happens
    assert vqa_accuracy("yes.", gts, "official") == 0.0
    # one dissenting annotator switches normalisation on for GT and prediction
    assert vqa_accuracy("Yes", ["yes"] * 9 + ["no"], "official") == 1.0
    assert vqa_accuracy("two", ["2"] * 10, "official") == 0.0
    assert vqa_accuracy("two", ["2"] * 10, "openflamingo") == 1.0


@pytest.mark.parametrize("mode", BOTH)
@pytest.mark.parametrize(
    "matches, expected, rounded",
    [
        # k matching GT answers among 10 distinct dicts. Leaving out a matching answer leaves k-1
        # matches, leaving out another leaves k:  acc = (k*min(1,(k-1)/3) + (10-k)*min(1,k/3)) / 10
        (0, 0.0, 0.0),
        (1, 0.3, 30.0),  # (1*0 + 9*1/3) / 10
        (2, 0.6, 60.0),  # (2*1/3 + 8*2/3) / 10 = 6/10
        (3, 0.9, 90.0),  # (3*2/3 + 7*1) / 10 = 9/10
        (4, 1.0, 100.0),  # (4*1 + 6*1) / 10
        (10, 1.0, 100.0),
    ],
)
def test_leave_one_out_values(mode, matches, expected, rounded):
    gts = ["cat"] * matches + [f"dog{i}" for i in range(10 - matches)]
    acc = vqa_accuracy("cat", gts, mode)
    assert acc == pytest.approx(expected, abs=1e-12)
    assert round(100 * acc, 2) == rounded
    assert acc == vqa_accuracy_reference("cat", gts, mode)  # bit-identical


@pytest.mark.parametrize("mode", BOTH)
def test_normalised_matches(mode):
    assert vqa_accuracy("two", ["2"] * 9 + ["3"], mode) == 1.0  # number words
    assert vqa_accuracy("the dog", ["dog"] * 5 + ["cat"] * 5, mode) == 1.0  # articles
    assert vqa_accuracy("dont", ["don't"] * 5 + ["no"] * 5, mode) == 1.0  # contractions
    assert vqa_accuracy("Yes.", ["yes"] * 3 + ["no"] * 7, mode) == pytest.approx(0.9)
    assert vqa_accuracy("1,000", ["1000"] * 2 + ["1"] * 8, mode) == pytest.approx(0.6)
    assert vqa_accuracy("3.5", ["3.5"] + ["35"] * 9, mode) == pytest.approx(0.3)


def test_equal_answer_dicts_are_left_out_together():
    """Answer dicts without answer_id that normalise to the same text compare equal: the official
    code removes all copies when leaving one out (here: every matching dict is 'left out')."""
    answers = [{"answer": "cat"}] * 4 + [{"answer": f"dog{i}"} for i in range(6)]
    anns = [{"question_id": 1, "question_type": "t", "answer_type": "other", "answers": answers}]
    preds = [{"question_id": 1, "answer": "cat"}]
    q = [{"question_id": 1}]
    # leaving out a "cat" removes all four -> 0 matches; leaving out a dog -> 4 matches -> 1
    for mode in BOTH:
        assert score_vqa(q, anns, preds, mode).perQuestion == {"1": 60.0}
        assert score_vqa_reference(q, anns, preds, mode).perQuestion == {"1": 60.0}
    with_ids = [dict(a, answer_id=k) for k, a in enumerate(answers)]
    anns[0]["answers"] = with_ids
    assert score_vqa(q, anns, preds).perQuestion == {"1": 100.0}


# ---------------------------------------------------------------------------------------------
# Whole-file scoring
# ---------------------------------------------------------------------------------------------


def _ann(qid, answers, qtype="what is", atype="other"):
    return {
        "question_id": qid,
        "image_id": qid // 10,
        "question_type": qtype,
        "answer_type": atype,
        "multiple_choice_answer": answers[0],
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)],
    }


def _questions(anns):
    return [{"question_id": a["question_id"], "image_id": a["image_id"], "question": "?"} for a in anns]


def test_rounding_and_breakdowns():
    # three answers each: q1/q2 all agree and match -> each answer leaves 2 matches -> 2/3;
    # q3 wrong -> 0. Overall uses the UNROUNDED values: 100 * (4/3) / 3 = 44.444 -> 44.44,
    # whereas the mean of the rounded per-question values (66.67, 66.67, 0) would be 44.45.
    anns = [
        _ann(10, ["a", "a", "a"], "what color", "other"),
        _ann(20, ["b", "b", "b"], "how many", "number"),
        _ann(30, ["c", "c", "c"], "what color", "other"),
    ]
    preds = [
        {"question_id": 10, "answer": "a"},
        {"question_id": 20, "answer": "b"},
        {"question_id": 30, "answer": "zzz"},
    ]
    s = score_vqa(_questions(anns), anns, preds)
    assert s.perQuestion == {"10": 66.67, "20": 66.67, "30": 0.0}
    assert s.overall == 44.44
    assert s.perQuestionType == {"what color": 33.33, "how many": 66.67}
    assert s.perAnswerType == {"other": 33.33, "number": 66.67}
    assert s.to_dict() == {
        "overall": 44.44,
        "perQuestionType": {"what color": 33.33, "how many": 66.67},
        "perAnswerType": {"other": 33.33, "number": 66.67},
        "perQuestion": {"10": 66.67, "20": 66.67, "30": 0.0},
    }
    assert list(s.to_dict()) == ["overall", "perQuestionType", "perAnswerType", "perQuestion"]
    assert s.n_questions == 3 and s.question_type_counts == {"what color": 2, "how many": 1}


def test_modes_order_and_answer_type_default():
    anns = [_ann(1, ["yes"] * 10, "is the", "yes/no"), _ann(2, ["no"] * 10, "is the", "yes/no")]
    del anns[1]["answer_type"]
    preds = [{"question_id": 2, "answer": "No"}, {"question_id": 1, "answer": "Yes"}]
    q = _questions(anns)
    with pytest.raises(UserError, match="no 'answer_type' key"):
        score_vqa(q, anns, preds, "official")
    of = score_vqa(q, anns, preds, "openflamingo")
    assert list(of.perQuestion) == ["2", "1"]  # OpenFlamingo visits the results' order
    assert of.perAnswerType == {"other": 100.0, "yes/no": 100.0}
    anns[1]["answer_type"] = "yes/no"
    off = score_vqa(q, anns, preds, "official")
    assert list(off.perQuestion) == ["1", "2"] and off.overall == 0.0  # "Yes" vs ten "yes"
    assert of.normalization == "openflamingo" and off.normalization == "official"


def test_inputs_not_modified():
    anns = [_ann(1, ["Yes.", "yes", "no "] + ["yes"] * 7)]
    preds = [{"question_id": 1, "answer": " YES\n"}]
    before = copy.deepcopy((anns, preds))
    score_vqa(_questions(anns), anns, preds)
    score_vqa_reference(_questions(anns), anns, preds)
    assert (anns, preds) == before


# ---------------------------------------------------------------------------------------------
# Fast == reference on noisy random data
# ---------------------------------------------------------------------------------------------

_POOL = [
    "yes",
    "Yes",
    "yes.",
    "no",
    "No!",
    "2",
    "two",
    "Two",
    "3.5",
    "1,000",
    "1000",
    "red",
    "Red car",
    "the red car",
    "red-car",
    "red, car",
    "dont",
    "don't",
    "Im",
    "somebody'd",
    "a",
    "an apple",
    "apple",
    "x" + "." * 35,
    "(yes)",
    "none",
    "0",
    "ten",
    "10:30",
    "e.g.",
    " \tdog\n",
    "dog",
    "cat",
    "hello/world",
    "hello / world",
    "",
    "@home",
    "100%",
    "u.s.a.",
    "usa",
    "١٢",
    "café",
]


def _random_data(n, seed):
    rng = random.Random(seed)
    anns, preds = [], []
    for qid in range(n):
        base = rng.sample(_POOL, rng.choice([1, 1, 2, 3, 4]))
        n_ans = rng.choice([10, 10, 10, 10, 3, 5])
        answers = []
        for k in range(n_ans):
            a = {"answer": rng.choice(base), "answer_confidence": rng.choice(["yes", "maybe"])}
            if qid % 7:  # official format; every 7th question lacks answer ids (equal dicts possible)
                a["answer_id"] = k + 1
            answers.append(a)
        anns.append(
            {
                "question_id": qid,
                "image_id": qid,
                "question_type": rng.choice("ABCDE"),
                "answer_type": rng.choice(["yes/no", "number", "other"]),
                "answers": answers,
            }
        )
        preds.append({"question_id": qid, "answer": rng.choice(_POOL + base * 4)})
    rng.shuffle(preds)
    return _questions(anns), anns, preds


@pytest.mark.parametrize("mode", BOTH)
def test_fast_equals_reference(mode):
    q, anns, preds = _random_data(4000, seed=7)
    fast = score_vqa(q, anns, preds, mode)
    ref = score_vqa_reference(q, anns, preds, mode)
    assert isinstance(fast, VQAScores)
    assert fast.overall == ref.overall
    assert fast.perQuestionType == ref.perQuestionType
    assert fast.perAnswerType == ref.perAnswerType
    assert fast.perQuestion == ref.perQuestion
    assert list(fast.perQuestion) == list(ref.perQuestion)
    # the single-question API agrees bit-for-bit with the reference loop
    rng = random.Random(3)
    for _ in range(500):
        gts = [rng.choice(_POOL) for _ in range(10)]
        pred = rng.choice(_POOL)
        assert vqa_accuracy(pred, gts, mode) == vqa_accuracy_reference(pred, gts, mode)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def small():
    anns = [_ann(i, ["yes"] * 10) for i in range(1, 6)]
    preds = [{"question_id": i, "answer": "yes"} for i in range(1, 6)]
    return _questions(anns), anns, preds


def test_validation_missing_and_unknown_ids(small):
    q, anns, preds = small
    with pytest.raises(UserError) as e:
        score_vqa(q, anns, preds[:1])
    msg = str(e.value)
    assert "4 annotated questions have no prediction (e.g. 2, 3, 4, ...)" in msg
    preds2 = preds + [{"question_id": 99, "answer": "x"}, {"question_id": 98, "answer": "x"}]
    with pytest.raises(UserError, match=r"2 predictions are for unknown question ids \(e.g. 99, 98\)"):
        score_vqa(q, anns, preds2)
    with pytest.raises(UserError, match="integers vs strings"):
        score_vqa(q, anns, [{"question_id": str(p["question_id"]), "answer": "x"} for p in preds])


def test_validation_duplicates_keys_types(small):
    q, anns, preds = small
    with pytest.raises(UserError, match="predictions entry 5: duplicate prediction for question_id 1"):
        score_vqa(q, anns, preds + [{"question_id": 1, "answer": "no"}])
    with pytest.raises(UserError, match="predictions entry 2 has no 'answer' key"):
        score_vqa(q, anns, preds[:2] + [{"question_id": 3}] + preds[3:])
    with pytest.raises(UserError, match="predictions entry 0 has no 'question_id' key"):
        score_vqa(q, anns, [{"answer": "x"}] + preds)
    with pytest.raises(UserError, match=r"predictions entry 1 \(question_id 2\): 'answer' must be a string, got int"):
        score_vqa(q, anns, [preds[0], {"question_id": 2, "answer": 2}] + preds[2:])
    with pytest.raises(UserError, match="predictions must be a list"):
        score_vqa(q, anns, {"question_id": 1})
    bad = copy.deepcopy(anns)
    bad[3]["answers"][2]["answer"] = 7
    with pytest.raises(UserError, match=r"annotations entry 3 \(question_id 4\): answer 2 is not a string"):
        score_vqa(q, bad, preds)
    bad = copy.deepcopy(anns)
    del bad[1]["question_type"]
    with pytest.raises(UserError, match=r"annotations entry 1 \(question_id 2\) has no 'question_type' key"):
        score_vqa(q, bad, preds)
    bad = copy.deepcopy(anns)
    del bad[2]["answers"][0]["answer"]
    with pytest.raises(UserError, match="answer 0 has no 'answer' key"):
        score_vqa(q, bad, preds)
    bad = copy.deepcopy(anns)
    bad[4]["question_id"] = 1
    with pytest.raises(UserError, match="annotations entries 0 and 4 share question_id 1"):
        score_vqa(q, bad, preds)
    with pytest.raises(UserError, match="not in the questions file"):
        score_vqa(q[:3], anns, preds)
    with pytest.raises(UserError, match="nothing to score"):
        score_vqa([], [], [])
    with pytest.raises(UserError, match="unknown VQA normalization"):
        score_vqa(q, anns, preds, mode="lmms")


def test_validation_names_the_file(small):
    q, anns, preds = small
    with pytest.raises(UserError) as e:
        score_vqa(q, anns, preds[:2], predictions_path="runs/p.json")
    assert str(e.value).startswith("runs/p.json: predictions do not match the annotations: 3 annotated")
