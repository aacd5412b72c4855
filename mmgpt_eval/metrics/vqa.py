"""VQA accuracy, exactly as the official VQA evaluation computes it (and OpenFlamingo's variant).

Two modes:

``official`` (default)
    The semantics of GT-Vision-Lab/VQA master, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` at
    a013f00 ("Fixed processing answers bug"), run under Python 3:

    * the prediction and every ground-truth (GT) answer get ``\\n``/``\\t`` -> space, then ``strip()``;
    * only when the GT answers of a question disagree (``len(set(answers)) > 1``) are the GT answers
      AND the prediction normalised (punctuation, then digits/articles/contractions). When all GT
      answers are identical nothing is normalised, so "Yes" against ten "yes" scores 0;
    * leave-one-out: for each GT answer, the other GT answers are the answer dicts that compare
      unequal (``!=``) to it, ``acc = min(1, #matches / 3)``; the question scores the mean of those;
    * per question ``round(100 * acc, 2)``; overall / per question type / per answer type
      ``round(100 * sum(accs) / len(accs), 2)`` over the unrounded accuracies, summed in the
      annotation file's order.

``openflamingo``
    The semantics of mlfoundations/open_flamingo ``open_flamingo/eval/vqa_metric.py`` (commit
    60a5fd6 "always postproccess gt answers" onwards): the same normalisation, but applied to the GT
    answers and the prediction ALWAYS; questions are visited in the predictions' order; a missing
    ``answer_type`` counts as ``"other"``.

Quirks reproduced on purpose (both modes share the normalisation):

* the punctuation list has no ``:`` and no apostrophe;
* if the text contains a digit-comma-digit anywhere, EVERY punctuation mark is deleted (not only the
  comma); otherwise a mark is deleted when it touches a space and replaced by a space elsewhere;
* the period regex ``(?!<=\\d)(\\.)(?!\\d)`` was meant to have a look-behind but is a look-ahead for the
  literal ``<=digit``, so it removes every period not followed by a digit ("3.5" kept, "a." -> "a");
  the official code passes ``re.UNICODE`` positionally, i.e. as ``count=32``: at most the first 32
  such periods are removed;
* number words ``none/zero..ten`` -> digits, articles a/an/the dropped, then the contractions map,
  whose capitalised keys ("Im", "Ive", ...) can never match because the text was lower-cased, and
  which maps "somebody'd" to "somebodyd";
* Python 3 string semantics (``\\d`` matches any Unicode decimal digit, ``str.split`` splits on
  Unicode whitespace), as every maintained harness runs it.
* leave-one-out by dict inequality: official-format answers carry distinct ``answer_id`` values, so
  "the other answers" are the other nine. If two answer dicts of a question are equal (no or repeated
  ``answer_id``, and the same normalised answer), the official code removes ALL copies when leaving
  one out; this implementation does the same (see :func:`_general_leave_one_out`).

Speed: each distinct answer string is cleaned and normalised once (per call), and the leave-one-out
average is computed from the number of GT answers equal to the prediction (0 matches -> 0, 4 or more
-> 1, otherwise the ten per-answer values are summed in order, as the official code does, so the
floating-point result is bit-identical). :mod:`mmgpt_eval_dev.vqa_reference` holds the
straightforward algorithm; tests and ``benchmarks/vqa_scoring_speed.py`` check both agree exactly.

Not reproduced: the official code mutates the caller's annotation dicts (normalised answers are
written back); here inputs are never modified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import UserError
from ..io import is_id, prediction_records

NLTK_FOR_OKVQA = ("punkt_tab", "averaged_perceptron_tagger_eng", "wordnet")
MODES = ("official", "openflamingo")

# Punctuation marks processed by processPunctuation, in the official order.
PUNCTUATION: tuple[str, ...] = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
# A digit, a comma, a digit anywhere in the text: then every mark above is deleted.
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# Deliberately the official malformed pattern: "(?!<=\d)" is a negative LOOK-AHEAD for "<=digit",
# which can never match where a "." starts, so this removes every "." not followed by a digit.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# The official call is periodStrip.sub("", text, re.UNICODE): the flag lands in ``count``.
PERIOD_STRIP_COUNT = int(re.UNICODE)  # 32

NUMBER_WORDS: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})

# The official contractions map (120 entries), one "key=value" pair per item. Keys with capitals
# are kept for fidelity although they cannot match lower-cased text.
_CONTRACTIONS_DATA = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll
someones=someone's somethingd=something'd somethingd've=something'd've something'dve=something'd've
somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've
therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll
theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've
werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's whered=where'd
wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS: dict[str, str] = dict(item.split("=", 1) for item in _CONTRACTIONS_DATA.split())
assert len(CONTRACTIONS) == 120


# --------------------------------------------------------------------------------------------
# Normalisation (pure functions)
# --------------------------------------------------------------------------------------------


def clean_answer(text: str) -> str:
    """What both evaluators do to every answer first: newline and tab -> space, then strip."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: conditions are tested on the input text, replacements are
    applied cumulatively, then periods not followed by a digit are removed (first 32 only)."""
    out = text
    digit_comma_digit = COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if digit_comma_digit or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, split on whitespace, number words -> digits,
    drop articles, then apply the contractions map; join with single spaces."""
    words = []
    for w in text.lower().split():
        w = NUMBER_WORDS.get(w, w)
        if w not in ARTICLES:
            words.append(w)
    return " ".join([CONTRACTIONS.get(w, w) for w in words])


def normalize_official(text: str) -> str:
    """The full transformation the official evaluator applies to an answer when the GT answers
    disagree: :func:`clean_answer`, :func:`process_punctuation`, :func:`process_digit_article`."""
    return process_digit_article(process_punctuation(clean_answer(text)))


def normalize_openflamingo(text: str) -> str:
    """OpenFlamingo's normalisation of an answer. The string transformation is identical to
    :func:`normalize_official`; the difference between the modes is WHEN it is applied (always in
    OpenFlamingo, only on disagreement officially)."""
    return process_digit_article(process_punctuation(clean_answer(text)))


# --------------------------------------------------------------------------------------------
# Per-question accuracy
# --------------------------------------------------------------------------------------------


def exact_match(prediction: str, answer: str) -> int:
    """1 when the prediction equals the single reference answer after :func:`normalize_openflamingo`."""
    return int(normalize_openflamingo(prediction) == normalize_openflamingo(answer))


def vizwiz_accuracy(prediction: str, answers: list[str]) -> float:
    """The VizWiz evaluator's accuracy of one prediction (0..1): the prediction normalised, the answers as
    given, leave-one-out by position, summed in answer order as the official loop does."""
    res = normalize_openflamingo(prediction)
    accs = []
    for i in range(len(answers)):
        matching = [a for j, a in enumerate(answers) if i != j and a == res]
        accs.append(min(1, float(len(matching)) / 3))
    return float(sum(accs)) / len(accs)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"unknown VQA normalization {mode!r}; choose one of: {', '.join(MODES)}")


def _leave_one_out(gts: Sequence[str], res: str, matches: int) -> float:
    """Mean over i of ``min(1, #{j != i: gts[j] == res} / 3)`` for pairwise-distinct answer dicts.

    ``matches`` is ``gts.count(res)``. The sum runs in answer order with the official value types, so
    the result is bit-identical to the official loop."""
    if matches == 0:
        return 0.0
    if matches >= 4:
        return 1.0  # every term is min(1, >=1) == 1; sum(n ones) / n == 1.0 exactly
    hit = min(1, (matches - 1) / 3)
    miss = min(1, matches / 3)
    return float(sum([hit if g == res else miss for g in gts])) / len(gts)


def _general_leave_one_out(answer_dicts: Sequence[dict], gts: Sequence[str], res: str) -> float:
    """The official leave-one-out for answer dicts that may compare equal: the "other answers" of
    answer i are all dicts ``!=`` to it (with the processed answer text in place), so equal copies
    are all removed together."""
    processed = [dict(d, answer=g) for d, g in zip(answer_dicts, gts)]
    accs = []
    for d in processed:
        n = 0
        for e, g in zip(processed, gts):
            if e != d and g == res:
                n += 1
        accs.append(min(1, n / 3))
    return float(sum(accs)) / len(accs)


def vqa_accuracy(pred: str, gt_answers: Sequence[str], mode: str = "official") -> float:
    """Unrounded VQA accuracy (0..1) of one prediction against its GT answer strings.

    The GT answers are treated as distinct answer dicts (official annotations give each one its own
    ``answer_id``), so leaving one out always leaves the other ``len(gt_answers) - 1``."""
    _check_mode(mode)
    if not gt_answers:
        raise UserError("a VQA question needs at least one ground-truth answer")
    gts = [clean_answer(a) for a in gt_answers]
    res = clean_answer(pred)
    if mode == "openflamingo" or len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(g)) for g in gts]
        res = process_digit_article(process_punctuation(res))
    return _leave_one_out(gts, res, gts.count(res))


# --------------------------------------------------------------------------------------------
# Whole-file scoring
# --------------------------------------------------------------------------------------------


@dataclass
class VQAScores:
    """Official-format VQA results. ``to_dict()`` gives exactly the official ``accuracy`` keys plus
    ``perQuestion`` (the official ``evalQA``, keyed by ``str(question_id)``)."""

    overall: float
    perQuestionType: dict[str, float]
    perAnswerType: dict[str, float]
    perQuestion: dict[str, float]
    normalization: str = "official"
    n_questions: int = 0
    question_type_counts: dict[str, int] = field(default_factory=dict)
    answer_type_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "perQuestionType": dict(self.perQuestionType),
            "perAnswerType": dict(self.perAnswerType),
            "perQuestion": dict(self.perQuestion),
        }


def aggregate(
    order: Sequence[Any],
    accs: Sequence[float],
    qtypes: Sequence[str],
    atypes: Sequence[str],
    mode: str,
) -> VQAScores:
    """Official ``setAccuracy`` / ``setEvalQA`` from per-question unrounded accuracies (in order)."""
    by_qt: dict[str, list[float]] = {}
    by_at: dict[str, list[float]] = {}
    per_question: dict[str, float] = {}
    for qid, acc, qt, at in zip(order, accs, qtypes, atypes):
        lst = by_qt.get(qt)
        if lst is None:
            by_qt[qt] = lst = []
        lst.append(acc)
        lst = by_at.get(at)
        if lst is None:
            by_at[at] = lst = []
        lst.append(acc)
        per_question[str(qid)] = round(100 * acc, 2)
    return VQAScores(
        overall=round(100 * float(sum(accs)) / len(accs), 2),
        perQuestionType={k: round(100 * float(sum(v)) / len(v), 2) for k, v in by_qt.items()},
        perAnswerType={k: round(100 * float(sum(v)) / len(v), 2) for k, v in by_at.items()},
        perQuestion=per_question,
        normalization=mode,
        n_questions=len(accs),
        question_type_counts={k: len(v) for k, v in by_qt.items()},
        answer_type_counts={k: len(v) for k, v in by_at.items()},
    )


class _Memo(dict):
    """dict that fills itself: ``memo[key]`` computes ``fn(key)`` once."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[str], str]):
        super().__init__()
        self.fn = fn

    def __missing__(self, key: str) -> str:
        value = self[key] = self.fn(key)
        return value


def _clean_str(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError("answer is not a string")
    return clean_answer(text)


def _normalize_cleaned(text: str) -> str:
    return process_digit_article(process_punctuation(text))


def _few(ids: Sequence[Any], k: int = 3) -> str:
    shown = ", ".join(repr(i) if isinstance(i, str) else str(i) for i in list(ids)[:k])
    return shown + (", ..." if len(ids) > k else "")


def _index_annotations(annotations: Any, mode: str, path: Any) -> dict[Any, int]:
    if not isinstance(annotations, list):
        raise UserError(f"annotations must be a list of objects, got {type(annotations).__name__}", path)
    if not annotations:
        raise UserError("no annotations: nothing to score", path)
    required = ("question_id", "question_type", "answers") + (("answer_type",) if mode == "official" else ())
    index: dict[Any, int] = {}
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise UserError(f"annotations entry {i} is not an object", path)
        for key in required:
            if key not in ann:
                qid = f" (question_id {ann['question_id']})" if "question_id" in ann else ""
                raise UserError(f"annotations entry {i}{qid} has no {key!r} key", path)
        qid = ann["question_id"]
        if not is_id(qid):
            raise UserError(f"annotations entry {i}: 'question_id' must be an integer or string, got {qid!r}", path)
        if qid in index:
            raise UserError(f"annotations entries {index[qid]} and {i} share question_id {qid!r}", path)
        index[qid] = i
        if not isinstance(ann["question_type"], str):
            raise UserError(f"annotations entry {i} (question_id {qid}): 'question_type' must be a string", path)
        if "answer_type" in ann and not isinstance(ann["answer_type"], str):
            raise UserError(f"annotations entry {i} (question_id {qid}): 'answer_type' must be a string", path)
        answers = ann["answers"]
        if not isinstance(answers, list) or not answers:
            raise UserError(f"annotations entry {i} (question_id {qid}): 'answers' must be a non-empty list", path)
    if len({type(q) for q in index}) > 1 and len({str(q) for q in index}) < len(index):
        raise UserError('question ids collide when written as text (e.g. 1 and "1")', path)
    return index


def _explain_answers(i: int, ann: dict, path: Any) -> UserError:
    qid = ann["question_id"]
    for j, d in enumerate(ann["answers"]):
        if not isinstance(d, dict):
            return UserError(f"annotations entry {i} (question_id {qid}): answer {j} is not an object", path)
        if "answer" not in d:
            return UserError(f"annotations entry {i} (question_id {qid}): answer {j} has no 'answer' key", path)
        if not isinstance(d["answer"], str):
            return UserError(
                f"annotations entry {i} (question_id {qid}): answer {j} is not a string "
                f"(got {type(d['answer']).__name__})",
                path,
            )
    return UserError(f"annotations entry {i} (question_id {qid}): malformed 'answers'", path)


def _check_questions(questions: Any, ann_index: dict[Any, int], path: Any) -> None:
    if not isinstance(questions, list):
        raise UserError(f"questions must be a list of objects, got {type(questions).__name__}", path)
    qids = set()
    for i, q in enumerate(questions):
        if not isinstance(q, dict):
            raise UserError(f"questions entry {i} is not an object", path)
        if "question_id" not in q:
            raise UserError(f"questions entry {i} has no 'question_id' key", path)
        try:
            qids.add(q["question_id"])
        except TypeError:
            raise UserError(f"questions entry {i}: 'question_id' must be an integer or string", path) from None
    missing = [qid for qid in ann_index if qid not in qids]
    if missing:
        raise UserError(
            f"{len(missing)} annotated question ids are not in the questions file (e.g. {_few(missing)}); "
            "are the questions and annotations from the same split?",
            path,
        )


def _index_predictions(predictions: Any, ann_index: dict[Any, int], path: Any) -> dict[Any, str]:
    answers: dict[Any, str] = {}
    for i, qid, answer in prediction_records(predictions, path, "question_id", "answer"):
        if qid in answers:
            raise UserError(f"predictions entry {i}: duplicate prediction for question_id {qid!r}", path)
        answers[qid] = answer
    unknown = [qid for qid in answers if qid not in ann_index]
    missing = [qid for qid in ann_index if qid not in answers]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} annotated questions have no prediction (e.g. {_few(missing)})")
        if unknown:
            hint = ""
            if any(isinstance(q, str) for q in unknown) != any(isinstance(q, str) for q in ann_index):
                hint = " (question ids differ in type: integers vs strings)"
            parts.append(f"{len(unknown)} predictions are for unknown question ids (e.g. {_few(unknown)}){hint}")
        raise UserError("predictions do not match the annotations: " + "; ".join(parts), path)
    return answers


def score_vqa(
    questions: list[dict],
    annotations: list[dict],
    predictions: list[dict],
    mode: str = "official",
    *,
    questions_path: Any = None,
    annotations_path: Any = None,
    predictions_path: Any = None,
) -> VQAScores:
    """Score official-format VQA predictions.

    ``questions``/``annotations`` are the ``"questions"``/``"annotations"`` lists of the official
    files, ``predictions`` the official results list ``[{"question_id", "answer"}]``. Predictions must
    cover exactly the annotated questions. Bad input raises :class:`UserError` (naming the
    ``*_path`` given for that input). Inputs are not modified.
    """
    _check_mode(mode)
    ann_index = _index_annotations(annotations, mode, annotations_path)
    _check_questions(questions, ann_index, questions_path)
    pred = _index_predictions(predictions, ann_index, predictions_path)

    if mode == "official":
        order = [ann["question_id"] for ann in annotations]
    else:  # OpenFlamingo iterates over the results' question ids, in the results' order
        order = [p["question_id"] for p in predictions]

    clean = _Memo(_clean_str)
    norm = _Memo(_normalize_cleaned)
    always = mode == "openflamingo"
    accs: list[float] = []
    qtypes: list[str] = []
    atypes: list[str] = []
    for qid in order:
        i = ann_index[qid]
        ann = annotations[i]
        answers = ann["answers"]
        try:
            gts = [clean[d["answer"]] for d in answers]
        except (KeyError, TypeError):
            raise _explain_answers(i, ann, annotations_path) from None
        res = clean[pred[qid]]
        if always or len(set(gts)) > 1:
            gts = [norm[g] for g in gts]
            res = norm[res]
        m = gts.count(res)
        if m >= 2 and not _distinct_matching_ids(answers, gts, res):
            acc = _general_leave_one_out(answers, gts, res)
        else:
            acc = _leave_one_out(gts, res, m)
        accs.append(acc)
        qtypes.append(ann["question_type"])
        atypes.append(ann["answer_type"] if "answer_type" in ann else "other")
    return aggregate(order, accs, qtypes, atypes, mode)


def _distinct_matching_ids(answers: Sequence[dict], gts: Sequence[str], res: str) -> bool:
    """True when the answer dicts equal to the prediction carry pairwise-distinct ``answer_id`` values
    (then no two of them compare equal, and each leaves exactly itself out)."""
    try:
        ids = [d["answer_id"] for d, g in zip(answers, gts) if g == res]
        return len(set(ids)) == len(ids)
    except (KeyError, TypeError):
        return False


def openflamingo_okvqa_postprocess(generated: str) -> str:
    """OpenFlamingo's OK-VQA answer cleanup (``open_flamingo.eval.ok_vqa_utils``, imported from the installed
    package): cut at "Question"/"Answer"/"Short" and at ", ", then OK-VQA v1.1 stemming (NLTK word
    tokenizer, POS tagger, WordNet lemmatizer, ``inflection``). NLTK's data is not bundled with NLTK; a
    clear error names what is missing."""
    from ..errors import UserError

    try:
        from open_flamingo.eval.ok_vqa_utils import postprocess_ok_vqa_generation

        return postprocess_ok_vqa_generation(generated)
    except LookupError as e:
        first = next((n for n in NLTK_FOR_OKVQA if n in str(e)), "NLTK data")
        raise UserError(
            f"OpenFlamingo's OK-VQA post-processing needs NLTK data that is not installed ({first}); "
            f"install it with: python -m nltk.downloader {' '.join(NLTK_FOR_OKVQA)}"
        ) from None
