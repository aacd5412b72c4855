"""A toy judge for trying ``mmgpt-eval judge`` offline: ``--judge python:examples/judge_example.py:judge``.

It is no judge of quality -- it prefers answers with more distinct words -- but it answers in exactly
the formats the judge prompts ask for, so every part of judging (cache, both orders, repeats,
agreement, position bias, cost) can be seen working without a model or a network."""

from __future__ import annotations

import re


def _section(text: str, title: str) -> str:
    """The text under ``[title]`` in a rendered judge prompt (up to the next blank line)."""
    return text.split(f"[{title}]\n", 1)[1].split("\n\n", 1)[0] if f"[{title}]\n" in text else ""


def _score(answer: str) -> int:
    return max(1, min(10, 1 + len(set(re.findall(r"[a-z]+", answer.lower()))) // 2))


def judge(messages: list[dict[str, str]], repeat: int) -> str:
    """The reply to one judge prompt; ``repeat`` (0, 1, ...) adds a little judge noise."""
    text = messages[-1]["content"]
    if "[Reply A]" in text:
        a, b = _score(_section(text, "Reply A")), _score(_section(text, "Reply B"))
        return "Compared the distinct words.\nVERDICT: " + ("A" if a > b else "B" if b > a else "tie")
    if "[Reference reply]" in text:
        ref, cand = _score(_section(text, "Reference reply")), _score(_section(text, "Candidate reply"))
        return f"Scored both.\nSCORES: reference={ref}; candidate={cand}"
    s = _score(_section(text, "Reply to grade"))
    noisy = min(10, s + (repeat % 2))
    return f"Graded by distinct words.\nSCORES: helpfulness={s}; accuracy={noisy}; detail={s}"
