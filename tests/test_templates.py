"""Snapshot tests: the exact template strings, their hashes and the extraction rules."""

from __future__ import annotations

import json

import pytest

from conftest import V1
from mmgpt_eval.errors import UserError
from mmgpt_eval.templates import TEMPLATES, get_template, render_fewshot, render_mmgpt_dialog

PRE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def test_mmgpt_strings():
    assert TEMPLATES["mmgpt"].render(question="What is in this image?") == (
        PRE + "\n\n### Image:\n<image>\n\n### Instruction:\nWhat is in this image?\n\n### Response:\n"
    )
    assert TEMPLATES["mmgpt-text"].render(question="Write a haiku.") == (
        PRE + "\n\n### Instruction:\nWrite a haiku.\n\n### Response:\n"
    )
    assert TEMPLATES["mmgpt-turn"].render(question="What color is it?") == (
        "\n\n### Instruction:\nWhat color is it?\n\n### Response:\n"
    )


def test_openflamingo_strings():
    t = TEMPLATES["of-vqa"]
    assert t.render(question="Is it red?") == "<image>Question:Is it red? Short answer:"
    assert (
        t.render_demo(question="Is it red?", answer="yes")
        == "<image>Question:Is it red? Short answer:yes<|endofchunk|>"
    )
    c = TEMPLATES["of-caption"]
    assert c.render() == "<image>Output:"
    assert c.render_demo(caption="A cat.") == "<image>Output:A cat.<|endofchunk|>"
    demos = [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]
    text, n = render_fewshot(t, {"question": "q"}, demos, zero_shot_text_demos=False)
    assert n == 2 and text == (
        "<image>Question:q1 Short answer:a1<|endofchunk|>\n"
        "<image>Question:q2 Short answer:a2<|endofchunk|>\n<image>Question:q Short answer:"
    )
    text0, n0 = render_fewshot(t, {"question": "q"}, demos, zero_shot_text_demos=True)
    assert n0 == 0 and text0.count("<image>") == 1 and text0.startswith("Question:q1 Short answer:a1")


def test_openflamingo_classification_strings():
    """open_flamingo/eval: get_imagenet_prompt / get_hateful_memes_prompt, demos joined without a separator
    (evaluate_classification), 0-shot demos keep their text and lose their <image>."""
    t = TEMPLATES["of-imagenet"]
    text, n = render_fewshot(t, {}, [{"answer": "goldfish"}, {"answer": "tench"}], zero_shot_text_demos=False)
    assert (text, n) == ("<image>Output:goldfish<|endofchunk|><image>Output:tench<|endofchunk|><image>Output:", 2)
    h = TEMPLATES["of-hatefulmemes"]
    text0, n0 = render_fewshot(h, {"ocr": "q"}, [{"ocr": "a", "answer": "no"}], zero_shot_text_demos=True)
    assert (text0, n0) == (
        "is an image with: 'a' written on it. Is it hateful? Answer:no<|endofchunk|>"
        "<image>is an image with: 'q' written on it. Is it hateful? Answer:",
        0,
    )


def test_template_hashes_are_pinned():
    # Changing a template's text must be a deliberate, visible change (a new name, or this snapshot).
    got = {name: t.sha256[:16] for name, t in TEMPLATES.items()}
    assert got == {
        "mmgpt": "ab5cd243e73ee053",
        "mmgpt-text": "fca937b3ebb2cb4a",
        "mmgpt-turn": "cea4496a2ebc5a46",
        "of-vqa": "a0c736f6389c5345",
        "of-caption": "d6c934e76f39c66c",
        "of-imagenet": "acd219a6d883f279",
        "of-hatefulmemes": "59e135fa751c05aa",
        "raw": "095d60a8ad4d55ec",
    }


def test_mmgpt_hash_literal():
    import hashlib

    payload = json.dumps(
        {
            "name": "mmgpt",
            "prompt": PRE + "\n\n### Image:\n<image>\n\n### Instruction:\n{question}\n\n### Response:\n",
            "demo": None,
            "extraction": "mmgpt_response",
            "stop": "lm_eos",
        },
        sort_keys=True,
    )
    assert TEMPLATES["mmgpt"].sha256 == hashlib.sha256(payload.encode()).hexdigest()


def test_dialog_matches_original_demo():
    """The 2-turn prompt of the v1 fixture was produced by MultiModal-GPT's own PromptGenerator."""
    case = next(
        json.loads(line)
        for line in (V1 / "prompts.jsonl").read_text().splitlines()
        if json.loads(line)["id"] == "v5_two_turn"
    )
    turns = [(t["instruction"], t["response"]) for t in case["turns"]]
    assert render_mmgpt_dialog(turns, has_image=True) == case["prompt"]


def test_extraction_rules():
    m = TEMPLATES["mmgpt"]
    full = PRE + "\n\n### Image:\n\n\n### Instruction:\nQ\n\n### Response:\n  blue square \n"
    assert m.extract(full, "blue square") == "blue square"
    assert m.extract(full + "### Response: again", "") == "again"  # text after the LAST marker
    v = TEMPLATES["of-vqa"]
    assert v.extract("", "yes Question: is it") == "yes "
    assert v.extract("", "red, blue") == "red"
    assert v.extract("", "two Short answer") == "two "
    c = TEMPLATES["of-caption"]
    assert c.extract("", 'A "big" dog.Output: x') == "A big dog."


def test_unknown_template():
    with pytest.raises(UserError, match="unknown template 'nope'; known templates: mmgpt"):
        get_template("nope")
