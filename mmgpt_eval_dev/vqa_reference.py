"""Straightforward VQA accuracy: the official algorithm, one question at a time, no caching.

This mirrors the structure of the official ``VQAEval.evaluate`` (GT-Vision-Lab/VQA a013f00) and of
OpenFlamingo's copy: clean every answer, normalise with ``processPunctuation`` (which searches the
digit-comma-digit regex once per punctuation mark) and ``processDigitArticle``, then build the
"other GT answers" of each answer by dict inequality and count matches. It exists to cross-check
:mod:`mmgpt_eval.metrics.vqa` (the fast implementation used everywhere) and as the baseline of
``benchmarks/vqa_scoring_speed.py``. It expects valid input (no validation) and works on shallow
copies of the answer dicts, so, unlike the official code, it does not modify its inputs.
"""

from __future__ import annotations

import re

from mmgpt_eval.metrics.vqa import (
    ARTICLES,
    COMMA_STRIP,
    CONTRACTIONS,
    MODES,
    NUMBER_WORDS,
    PERIOD_STRIP,
    PERIOD_STRIP_COUNT,
    PUNCTUATION,
    VQAScores,
)


def process_punctuation_reference(in_text: str) -> str:
    out_text = in_text
    for p in PUNCTUATION:
        if (p + " " in in_text or " " + p in in_text) or (re.search(COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return PERIOD_STRIP.sub("", out_text, count=PERIOD_STRIP_COUNT)


def process_digit_article_reference(in_text: str) -> str:
    out = []
    for word in in_text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            out.append(word)
    for k, word in enumerate(out):
        if word in CONTRACTIONS:
            out[k] = CONTRACTIONS[word]
    return " ".join(out)


def question_accuracy_reference(answer_dicts: list[dict], pred: str, mode: str = "official") -> float:
    """The official per-question loop; returns the unrounded accuracy (``avgGTAcc``)."""
    answers = [dict(a) for a in answer_dicts]  # shallow copies: the official code mutates these
    for a in answers:
        a["answer"] = a["answer"].replace("\n", " ")
        a["answer"] = a["answer"].replace("\t", " ")
        a["answer"] = a["answer"].strip()
    res_ans = pred
    res_ans = res_ans.replace("\n", " ")
    res_ans = res_ans.replace("\t", " ")
    res_ans = res_ans.strip()
    gt_answers = [a["answer"] for a in answers]
    if mode == "openflamingo" or len(set(gt_answers)) > 1:
        for a in answers:
            a["answer"] = process_punctuation_reference(a["answer"])
            a["answer"] = process_digit_article_reference(a["answer"])
        res_ans = process_punctuation_reference(res_ans)
        res_ans = process_digit_article_reference(res_ans)
    gt_acc = []
    for gt_ans in answers:
        other = [item for item in answers if item != gt_ans]
        matching = [item for item in other if item["answer"] == res_ans]
        gt_acc.append(min(1, float(len(matching)) / 3))
    return float(sum(gt_acc)) / len(gt_acc)


def vqa_accuracy_reference(pred: str, gt_answers: list[str], mode: str = "official") -> float:
    """One question, GT answers given as strings (treated as dicts with distinct answer ids)."""
    return question_accuracy_reference(
        [{"answer": a, "answer_id": k + 1} for k, a in enumerate(gt_answers)], pred, mode
    )


def score_vqa_reference(
    questions: list[dict], annotations: list[dict], predictions: list[dict], mode: str = "official"
) -> VQAScores:
    """Same contract and result as :func:`mmgpt_eval.metrics.vqa.score_vqa` on valid input."""
    if mode not in MODES:
        raise ValueError(mode)
    gts = {ann["question_id"]: ann for ann in annotations}
    res = {p["question_id"]: p for p in predictions}
    if mode == "official":
        ques_ids = [ann["question_id"] for ann in annotations]
    else:
        ques_ids = [p["question_id"] for p in predictions]

    acc_qa: list[float] = []
    acc_ques_type: dict[str, list[float]] = {}
    acc_ans_type: dict[str, list[float]] = {}
    eval_qa: dict[str, float] = {}
    for ques_id in ques_ids:
        ann = gts[ques_id]
        avg = question_accuracy_reference(ann["answers"], res[ques_id]["answer"], mode)
        ques_type = ann["question_type"]
        ans_type = ann["answer_type"] if "answer_type" in ann else "other"
        acc_qa.append(avg)
        acc_ques_type.setdefault(ques_type, []).append(avg)
        acc_ans_type.setdefault(ans_type, []).append(avg)
        eval_qa[str(ques_id)] = round(100 * avg, 2)

    return VQAScores(
        overall=round(100 * float(sum(acc_qa)) / len(acc_qa), 2),
        perQuestionType={t: round(100 * float(sum(v)) / len(v), 2) for t, v in acc_ques_type.items()},
        perAnswerType={t: round(100 * float(sum(v)) / len(v), 2) for t, v in acc_ans_type.items()},
        perQuestion=eval_qa,
        normalization=mode,
        n_questions=len(acc_qa),
        question_type_counts={t: len(v) for t, v in acc_ques_type.items()},
        answer_type_counts={t: len(v) for t, v in acc_ans_type.items()},
    )
