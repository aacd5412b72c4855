"""counting and dialog tasks end to end on the tiny preset; history modes; counting data formats."""

from __future__ import annotations

import json

import pytest

from datasets import make_vqa_dataset
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.results import RunResults
from mmgpt_eval.taskapi import Output, RunContext
from mmgpt_eval_tasks.counting import Counting
from mmgpt_eval_tasks.dialog import Dialog


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cd")
    rc = main(
        [
            "-q",
            "run",
            "--model",
            "tiny",
            "--tasks",
            "counting,dialog",
            "--limit",
            "6",
            "--output-dir",
            str(out),
            "--no-progress",
            "--dialog-max-new-tokens",
            "12",
        ]
    )
    assert rc == 0
    return out


def test_counting_and_dialog_end_to_end(run_dir):
    r = RunResults.load(run_dir)
    assert set(r.tasks) == {"counting", "dialog"}
    c = r.tasks["counting"]
    assert set(c.metrics) == {"accuracy", "mae", "off_by_one_rate", "unparsable_rate"}
    assert c.breakdown["source"] == "procedural" and c.n_available == 550
    recs = r.samples("counting")
    assert len(recs) == 6 and all({"exact", "unparsable", "parsed"} <= set(x["metrics"]) for x in recs)
    d = r.tasks["dialog"]
    assert d.n_available == 70 and d.n_samples == 6
    for k in (
        "open_words_mean",
        "conv_collapse_rate",
        "checks_pass_rate",
        "conv_leak_rate",
        "conv_truncation_rate",
        "conv_empty_rate",
        "conv_eos_rate",
        "distinct_2",
        "grounding_rate",
        "open_median_words",
    ):
        assert k in d.metrics
    assert d.metric_info["conv_collapse_rate"]["higher_is_better"] is False
    pooled = d.breakdown["pooled_turns"]["overall"]  # the turn-level rates of the same probes
    assert {"turn_collapse_rate", "turn_template_leak_rate", "turn_eos_rate"} <= set(pooled)
    assert not {"collapse_rate", "template_leak_rate", "eos_rate"} & (set(pooled) | set(d.metrics))
    assert set(d.breakdown["pooled_turns"]["by_kind"]) == {"open", "short", "language"}
    drecs = r.samples("dialog")
    for x in drecs:
        n = len(x["references"])
        assert all(f"t{k}" in x["outputs"] for k in range(n))
        assert len(x["metrics"]["turns"]) == n
        if x["meta"]["grounding"]:
            assert "blank" in x["outputs"] and x["metrics"]["grounding"] is not None
    from mmgpt_eval.metrics.semantic import available

    if available():  # make test installs the semantic extra: the metric is computed
        assert 0 <= d.metrics["semantic_similarity"] <= 1
    else:
        assert any(n.startswith("semantic similarity") for n in d.notes)


def test_dialog_prompt_follows_the_demo_and_history_modes():
    t = Dialog()
    samples = t.load()
    s = next(x for x in samples if x.meta["turns"] >= 2 and x.meta["image"])
    conv = t.conversation(s)
    fake = Output(
        prompt="",
        prompt_sha256="",
        raw="MY OWN ANSWER",
        prediction="MY OWN ANSWER",
        token_ids=[],
        stopped_on_eos=True,
        num_new_tokens=3,
        max_new_tokens=10,
        image_keys=[],
    )
    own = t.requests(s, 1, {"t0": fake}, RunContext(history_mode="self"))[0].prompt
    teach = t.requests(s, 1, {"t0": fake}, RunContext(history_mode="teacher"))[0].prompt
    first = t.requests(s, 0, {}, RunContext())[0].prompt
    assert own == first + "MY OWN ANSWER\n\n### Instruction:\n" + conv.turns[1].instruction + "\n\n### Response:\n"
    assert (
        teach
        == first
        + conv.turns[0].reference
        + "\n\n### Instruction:\n"
        + conv.turns[1].instruction
        + "\n\n### Response:\n"
    )
    assert own.count("<image>") == 1 and own.count("### Image:") == 1
    lang = next(x for x in samples if not x.meta["image"])
    assert "### Image:" not in t.requests(lang, 0, {}, RunContext())[0].prompt


def test_dialog_teacher_mode_run(tmp_path):
    rc = main(
        [
            "-q",
            "run",
            "--model",
            "tiny",
            "--tasks",
            "dialog",
            "--limit",
            "2",
            "--history-mode",
            "teacher",
            "--output-dir",
            str(tmp_path),
            "--no-progress",
            "--dialog-max-new-tokens",
            "4",
        ]
    )
    assert rc == 0
    r = RunResults.load(tmp_path)
    assert r.run["history_mode"] == "teacher"
    rec = r.samples("dialog")[0]
    ref0 = rec["references"][0]["reference"]
    assert ref0 and ref0 in rec["outputs"]["t1"]["prompt"]


def test_counting_procedural_is_deterministic_and_balanced():
    a = Counting().load()
    b = Counting().load()
    assert [s.id for s in a] == [s.id for s in b]
    assert a[3].images[0].open().tobytes() == b[3].images[0].open().tobytes()
    counts = {}
    for s in a:
        counts[s.references] = counts.get(s.references, 0) + 1
    assert counts == {k: 50 for k in range(11)}


def test_counting_tallyqa_and_vqa_sources(tmp_path):
    vqa = make_vqa_dataset(tmp_path / "vqa")
    c = Counting(
        {
            "counting_vqa_questions": str(vqa["questions"]),
            "counting_vqa_annotations": str(vqa["annotations"]),
            "counting_vqa_images": str(vqa["images"]),
        }
    )
    s = c.load()
    assert c.source == "vqav2" and len(s) == 4 and all(isinstance(x.references, int) for x in s)
    image = next(vqa["images"].iterdir()).relative_to(tmp_path)  # relative to the file's folder
    rows = [{"image": str(image), "question": "How many shapes are there?", "answer": 3}]
    f = tmp_path / "tally.json"
    f.write_text(json.dumps(rows))
    c = Counting({"counting_tallyqa_json": str(f)})
    assert c.load()[0].references == 3 and c.source == "tallyqa"
    f.write_text(json.dumps([{"image": "nope.png", "question": "q", "answer": 1}]))
    with pytest.raises(UserError, match="image not found"):
        Counting({"counting_tallyqa_json": str(f)}).load()
    f.write_text(json.dumps([{"image": "x.png", "question": "q", "answer": -1}]))
    with pytest.raises(UserError, match="non-negative integer"):
        Counting({"counting_tallyqa_json": str(f)}).load()
