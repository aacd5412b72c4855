"""Judge prompt templates, written for this project from the benchmarks' published descriptions
(banded rubric grading per dimension and per turn; a reference-guided score of reference and
candidate; a pairwise verdict judged in both orders). Every template ends by asking for one fixed,
machine-readable last line, which :mod:`mmgpt_eval.judge.parse` reads strictly.

A template's ``sha256`` covers all of its text and settings; it is part of the judge identity and of
every judgment's cache key, so editing a prompt re-judges instead of mixing judgments."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Sequence

from .backends import Messages

BANDS = (
    "1-2: wrong, irrelevant or harmful; 3-4: major errors or omissions; 5-6: partly right, with clear gaps; "
    "7-8: right and useful, minor flaws; 9-10: fully right, complete and clear"
)


@dataclass(frozen=True)
class Template:
    name: str
    mode: str  # "rubric" | "relative" | "pairwise"
    system: str
    user: str  # str.format fields: see each template
    dimensions: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


RUBRIC = Template(
    name="rubric-v1",
    mode="rubric",
    system=(
        "You grade one reply of an AI assistant that can see images. You cannot see the image; you get a "
        "description of it instead. Judge only the reply to the last user message, using the conversation "
        "before it as context. Score each dimension as an integer from 1 to 10 using these bands: " + BANDS + "."
    ),
    user=(
        "[Image description]\n{image}\n\n[Conversation so far]\n{history}\n\n[Last user message]\n{question}\n\n"
        "[Reply to grade]\n{answer}\n\n"
        "Dimensions: {dimension_help}\n"
        "Explain your grading in a few sentences. Then end with exactly one line of the form\n"
        "SCORES: {score_line}"
    ),
    dimensions=("helpfulness", "accuracy", "detail"),
)

RUBRIC_DIMENSION_HELP = {
    "helpfulness": "helpfulness (does it answer what was asked)",
    "accuracy": "accuracy (is what it says about the image and the world true)",
    "detail": "detail (is it specific and complete without padding)",
}

RELATIVE = Template(
    name="relative-v1",
    mode="relative",
    system=(
        "You compare two replies to a question about an image: a reference reply and a candidate reply. You "
        "cannot see the image; you get a description of it instead. Score each reply on its own merits "
        "(helpfulness, accuracy, detail) as an integer from 1 to 10 using these bands: " + BANDS + ". "
        "Ignore which reply is longer unless the length itself helps or hurts."
    ),
    user=(
        "[Image description]\n{image}\n\n[Question]\n{question}\n\n[Reference reply]\n{reference}\n\n"
        "[Candidate reply]\n{answer}\n\n"
        "Explain your scores in a few sentences. Then end with exactly one line of the form\n"
        "SCORES: reference=<1-10>; candidate=<1-10>"
    ),
    dimensions=("reference", "candidate"),
)

PAIRWISE = Template(
    name="pairwise-v1",
    mode="pairwise",
    system=(
        "You decide which of two assistant replies to the same conversation about an image is better. You "
        "cannot see the image; you get a description of it instead. Prefer the reply that is more helpful, "
        "accurate and specific. The order in which the replies are shown says nothing about their quality, and "
        "length alone is no merit. Call it a tie when neither is clearly better."
    ),
    user=(
        "[Image description]\n{image}\n\n[Conversation so far]\n{history}\n\n[Last user message]\n{question}\n\n"
        "[Reply A]\n{answer_a}\n\n[Reply B]\n{answer_b}\n\n"
        "Explain your decision in a few sentences. Then end with exactly one line, one of\n"
        "VERDICT: A\nVERDICT: B\nVERDICT: tie"
    ),
)

TEMPLATES = {t.name: t for t in (RUBRIC, RELATIVE, PAIRWISE)}


def _history(turns: list[tuple[str, str]]) -> str:
    if not turns:
        return "(none)"
    return "\n".join(f"User: {q}\nAssistant: {a}" for q, a in turns)


def _image(image: str | None) -> str:
    return image if image else "(no description given)"


def render_rubric(
    template: Template,
    question: str,
    answer: str,
    *,
    history: Sequence[tuple[str, str]] = (),
    image: str | None = None,  # type: ignore[assignment]
) -> Messages:
    dims = template.dimensions
    user = template.user.format(
        image=_image(image),
        history=_history(list(history)),
        question=question,
        answer=answer,
        dimension_help="; ".join(RUBRIC_DIMENSION_HELP.get(d, d) for d in dims),
        score_line="; ".join(f"{d}=<1-10>" for d in dims),
    )
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


def render_relative(
    template: Template, question: str, reference: str, answer: str, *, image: str | None = None
) -> Messages:
    user = template.user.format(image=_image(image), question=question, reference=reference, answer=answer)
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


def render_pairwise(
    template: Template,
    question: str,
    answer_a: str,
    answer_b: str,
    *,
    history: Sequence[tuple[str, str]] = (),
    image: str | None = None,
) -> Messages:
    user = template.user.format(
        image=_image(image), history=_history(list(history)), question=question, answer_a=answer_a, answer_b=answer_b
    )
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]
