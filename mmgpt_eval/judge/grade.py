"""The ``grade`` judgment mode: an answer graded for correctness against the ground-truth answer, from
0.0 to 1.0 in steps of 0.1, as MM-Vet describes its grader (a few-shot prompt that compares the
model's answer with the ground truth; partial credit for partly right answers; ``<AND>`` / ``<OR>``
in a ground truth join parts that are all needed / alternatives of which one is enough).

The prompt and its examples are written for this project. The judge's last non-blank line must be
exactly ``GRADE: x`` with x in [0, 1] and at most one decimal (``0``, ``0.7``, ``1.0``); it becomes
the integer score ``{"score": k}`` in tenths (0..10). Anything else is a
:class:`~mmgpt_eval.judge.parse.ParseFailure`, counted, never a score. Judgments go through the
runner's cache, repeats and retries exactly like the other modes."""

from __future__ import annotations

import re

from ..errors import UserError
from .backends import Messages
from .modes import AnswerItem, Judgment, JudgeRunner
from .parse import ParseFailure
from .prompts import Template

GRADE_MAX = 10  # tenths: a score k means k / 10
_GRADE = re.compile(r"^GRADE:\s*(0(?:\.[0-9])?|1(?:\.0)?)\s*$")

_EXAMPLES = """\
Question: What does the price tag on the jar say?
Ground truth: 4.99
Answer: The tag shows a price of $4.99.
GRADE: 1.0

Question: How many candles are on the cake?
Ground truth: 6
Answer: There are eight candles on the cake.
GRADE: 0.0

Question: Which two animals are sitting on the sofa?
Ground truth: cat <AND> dog
Answer: A cat and a rabbit are on the sofa.
GRADE: 0.5

Question: What is the woman holding over her head?
Ground truth: umbrella <OR> parasol
Answer: She holds a parasol to keep off the sun.
GRADE: 1.0

Question: Name the three colours of the flag from left to right.
Ground truth: green, white, orange
Answer: Green, white and red.
GRADE: 0.7

Question: What should the driver do at this sign?
Ground truth: stop and give way to traffic on the main road
Answer: The driver should slow down.
GRADE: 0.2"""

GRADE = Template(
    name="grade-v1",
    mode="grade",
    system=(
        "You check whether an AI assistant's answer to a question about an image is correct, by comparing it "
        "with the ground-truth answer. You do not see the image; the ground truth decides. Grade correctness "
        "only, not style or length, from 0.0 (wrong) to 1.0 (fully correct) in steps of 0.1. Give partial "
        "credit when the answer is partly right: some of the required parts, or right but vague. In a ground "
        "truth, <AND> joins parts that are all required and <OR> joins alternatives of which one is enough."
    ),
    user=(
        "Graded examples:\n\n" + _EXAMPLES + "\n\nNow grade this one.\n\n"
        "[Image description]\n{image}\n\n[Question]\n{question}\n\n[Ground truth]\n{reference}\n\n"
        "[Answer to grade]\n{answer}\n\n"
        "Explain your grade in one or two sentences. Then end with exactly one line of the form\n"
        "GRADE: <a number from 0.0 to 1.0 with one decimal>"
    ),
    dimensions=("score",),
)


def render_grade(
    template: Template, question: str, reference: str, answer: str, *, image: str | None = None
) -> Messages:
    user = template.user.format(
        image=image if image else "(no description given)", question=question, reference=reference, answer=answer
    )
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


def parse_grade(text: str) -> int | ParseFailure:
    """The grade in tenths (0..10) from a ``GRADE: x`` last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if not last:
        return ParseFailure("empty reply", last)
    m = _GRADE.match(last)
    if not m:
        return ParseFailure("the last line is not GRADE: <0.0-1.0, one decimal>", last)
    whole, _, tenth = m.group(1).partition(".")
    return int(whole) * 10 + (int(tenth) if tenth else 0)


def _grade_scores(text: str) -> dict[str, int] | ParseFailure:
    k = parse_grade(text)
    return k if isinstance(k, ParseFailure) else {"score": k}


def grade(runner: JudgeRunner, items: list[AnswerItem], template: Template = GRADE) -> list[Judgment]:
    """The last turn's answer of every item graded against the item's reference, ``runner.repeats``
    times each: one :class:`Judgment` per (item, repeat) with ``scores={"score": k}`` (k tenths), or
    ``failure`` set and no score."""
    slots: list[tuple[str, int, int]] = []
    inputs: list[tuple[Messages, str | None, int]] = []
    for it in items:
        if it.reference is None:
            raise UserError(f"item {it.id}: grade judging needs a reference answer")
        question, answer = it.turns[-1]
        msgs = render_grade(template, question, it.reference, answer, image=it.image)
        for r in range(runner.repeats):
            slots.append((it.id, len(it.turns) - 1, r))
            inputs.append((msgs, it.image_id, r))
    return runner.graded(template, slots, inputs, parse=_grade_scores)
