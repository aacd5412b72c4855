"""The embedded dialogue probe set and its loader (mmgpt_eval.data.dialog_spec)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from mmgpt_eval.data.counting_images import PROBE_SEED, SPLIT_SEEDS, make_counting_item
from mmgpt_eval.data.dialog_spec import (
    DEFAULT_PROBES_PATH,
    Conversation,
    ImageSpec,
    blank_image,
    load_dialog_probes,
    resolve_image,
)
from mmgpt_eval.errors import UserError
from mmgpt_eval.metrics.dialog import LEAK_MARKERS, find_term, normalise_answer

EVQA_COLOURS = {"red", "green", "blue", "yellow", "teal", "brown", "black", "gray"}
EVQA_SHAPES = {"circle", "rectangle", "triangle"}


@pytest.fixture(scope="module")
def convs() -> list[Conversation]:
    return load_dialog_probes()


@pytest.fixture(scope="module")
def evqa_facts() -> dict[int, tuple[str, str]]:
    """(shape, colour) of easy-VQA test images, from the dataset's own question/answer pairs."""
    import easy_vqa

    shape: dict[int, set] = {}
    colour: dict[int, set] = {}
    for q, a, i in zip(*easy_vqa.get_test_questions()):
        if re.fullmatch(r"what shape (is in the image|is present|does the image contain)\?", q):
            shape.setdefault(i, set()).add(a)
        m = re.fullmatch(r"what is the (\w+) shape\?", q)
        if m:
            shape.setdefault(i, set()).add(a)
            colour.setdefault(i, set()).add(m.group(1))
        m = re.fullmatch(r"what (?:color is|is the color of) the (\w+)\?", q)
        if m:
            colour.setdefault(i, set()).add(a)
            if m.group(1) != "shape":
                shape.setdefault(i, set()).add(m.group(1))
    return {
        i: (next(iter(shape[i])), next(iter(colour[i])))
        for i in shape
        if i in colour and len(shape[i]) == 1 and len(colour[i]) == 1
    }


# --------------------------------------------------------------------------- the embedded set


def test_embedded_set_shape(convs):
    assert DEFAULT_PROBES_PATH.is_file()
    assert len(convs) >= 60
    assert all(2 <= len(c.turns) <= 4 for c in convs)
    assert len({c.id for c in convs}) == len(convs)
    language_only = [c for c in convs if c.image is None]
    assert len(language_only) >= 20
    assert all(t.kind == "language" for c in language_only for t in c.turns)
    sources = Counter(c.image.source for c in convs if c.image is not None)
    assert sources["easyvqa"] >= 20 and sources["counting"] >= 10


def test_embedded_set_covers_every_probe(convs):
    turns = [t for c in convs for t in c.turns]
    kinds = Counter(t.kind for t in turns)
    assert all(kinds[k] >= 20 for k in ("open", "short", "language"))
    assert any(t.instruction == "Describe the image in detail." for t in turns)
    checks = Counter(k for t in turns for k in t.checks.to_dict())
    for key in (
        "must_include",
        "must_not_include",
        "expect_short_answer",
        "expect_count",
        "refers_back_to",
        "max_words",
        "min_words",
    ):
        assert checks[key] >= 10, key
    # template markers in must_not_include
    banned = {term for t in turns for term in t.checks.must_not_include}
    assert {"### Instruction", "### Response", "<image>", "<|endofchunk|>"} <= banned
    assert banned <= set(LEAK_MARKERS.values())
    # grounding, with an explicit other image everywhere in the embedded set
    grounded = [c for c in convs if c.grounding]
    assert len(grounded) >= 20
    assert all(c.grounding_other is not None for c in grounded)
    # long-form language turns (collapse applies to them too)
    assert sum(1 for t in turns if t.kind == "language" and (t.checks.min_words or 0) >= 10) >= 10
    # counting probes cover every true count 0..10
    counts = {
        t.checks.expect_count
        for c in convs
        if c.image and c.image.source == "counting"
        for t in c.turns
        if t.checks.expect_count is not None
    }
    assert counts == set(range(11))
    # carry-over on image and language-only conversations
    assert any(t.checks.refers_back_to is not None for c in convs if c.image is None for t in c.turns)
    assert any(t.checks.refers_back_to is not None for c in convs if c.image is not None for t in c.turns)


def test_easyvqa_references_are_correct(convs, evqa_facts):
    checked = 0
    for c in convs:
        if c.image is None or c.image.source != "easyvqa":
            continue
        assert c.image.split == "test"
        shape, colour = evqa_facts[c.image.image_id]
        assert c.note and f"one {colour} {shape}" in c.note
        for t in c.turns:
            exp = t.checks.expect_short_answer
            m = re.fullmatch(r"Is there an? (\w+) shape(?: in the image)?\? Answer yes or no\.", t.instruction)
            if m:
                assert exp == ("yes" if m.group(1) == colour else "no"), (c.id, t.instruction)
                checked += 1
            elif exp in EVQA_COLOURS:
                assert exp == colour, (c.id, t.instruction)
                checked += 1
            elif exp in EVQA_SHAPES:
                assert exp == shape, (c.id, t.instruction)
                checked += 1
            if t.checks.expect_count is not None:
                assert t.checks.expect_count == 1  # easy-VQA images hold one shape
                checked += 1
            if re.search(r"\bcolou?r is the (circle|rectangle|triangle)\b", t.instruction):
                assert shape in t.instruction
        if c.grounding:
            other = c.grounding_other
            if other.source == "easyvqa":
                o_shape, o_colour = evqa_facts[other.image_id]
                assert o_shape != shape and o_colour != colour, c.id
            else:  # "How many shapes" asked against a busy counting image
                assert len(make_counting_item(other.seed, other.index).shapes) > 1
    assert checked >= 40


def test_counting_references_are_correct(convs):
    checked = 0
    for c in convs:
        if c.image is None or c.image.source != "counting":
            continue
        assert c.image.seed == PROBE_SEED and PROBE_SEED not in SPLIT_SEEDS.values()
        item = make_counting_item(c.image.seed, c.image.index)
        for t in c.turns:
            exp = t.checks.expect_count
            if exp is not None:
                m_kind = re.fullmatch(r"How many (\w+)s (?:are there|can you see)\?", t.instruction)
                m_col = re.fullmatch(r"How many (\w+) shapes are there\?", t.instruction)
                if t.instruction == "How many shapes are there in total?":
                    assert exp == len(item.shapes)
                elif m_col:
                    assert exp == item.count("colour", m_col.group(1))
                else:
                    assert m_kind, t.instruction
                    assert exp == item.count("kind", m_kind.group(1))
                checked += 1
            m = re.fullmatch(r"Is there an? (\w+) shape\? Answer yes or no\.", t.instruction)
            if m:
                assert t.checks.expect_short_answer == ("yes" if item.count("colour", m.group(1)) else "no")
                checked += 1
        if c.grounding:
            other = make_counting_item(c.grounding_other.seed, c.grounding_other.index)
            assert c.turns[0].instruction == item.question
            assert other.count(*item.asked) != item.answer, c.id
    assert checked >= 30


def test_carry_over_keywords_stated_earlier(convs):
    for c in convs:
        for i, t in enumerate(c.turns):
            k = t.checks.refers_back_to
            if k is None:
                continue
            assert 0 <= k < i and t.checks.must_include
            earlier = c.turns[k].instruction + " " + (c.turns[k].reference or "")
            for term in t.checks.must_include:
                assert find_term(earlier, term) and not find_term(t.instruction, term)


def test_references_satisfy_their_own_checks(convs):
    """A turn's reference answer passes that turn's short-answer / count checks."""
    from mmgpt_eval.metrics.dialog import turn_probes

    for c in convs:
        for i, t in enumerate(c.turns):
            if t.reference is None:
                continue
            r = turn_probes(t.reference, kind=t.kind, checks=t.checks, turn_index=i)
            assert r["short_answer_match"] in (None, True), (c.id, i, t.reference)
            assert r["count_exact"] in (None, True), (c.id, i, t.reference)
            assert r["must_include_pass"] in (None, True), (c.id, i, t.reference)
            assert r["must_not_include_pass"] in (None, True), (c.id, i, t.reference)
            assert r["max_words_pass"] in (None, True), (c.id, i, t.reference)
            assert r["template_leak"] is False


def test_resolve_images(convs, tmp_path):
    img = resolve_image(ImageSpec("easyvqa", split="test", image_id=4))
    assert img.mode == "RGB" and img.size == (64, 64)
    cnt = resolve_image(ImageSpec("counting", seed=PROBE_SEED, index=5))
    assert cnt.tobytes() == make_counting_item(PROBE_SEED, 5).pixels()
    p = tmp_path / "x.png"
    blank_image(32, (0, 0, 0)).save(p)
    got = resolve_image(ImageSpec("path", path=str(p)))
    assert got.size == (32, 32) and got.getpixel((0, 0)) == (0, 0, 0)
    b = blank_image()
    assert b.size == (64, 64) and b.mode == "RGB" and b.getcolors() == [(64 * 64, (255, 255, 255))]
    with pytest.raises(UserError, match="not found"):
        resolve_image(ImageSpec("path", path=str(tmp_path / "missing.png")))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(UserError, match="cannot read image"):
        resolve_image(ImageSpec("path", path=str(tmp_path / "bad.png")))
    with pytest.raises(UserError, match="no image 99999"):
        resolve_image(ImageSpec("easyvqa", split="test", image_id=99999))
    # every image of the embedded set resolves (easy-VQA and counting: cheap)
    for c in convs:
        for ref in (c.image, c.grounding_other):
            if ref is not None:
                assert resolve_image(ref).size == (64, 64)


# --------------------------------------------------------------------------- loader errors

GOOD = {
    "id": "x1",
    "image": {"source": "counting", "seed": 3, "index": 1},
    "turns": [
        {"instruction": "How many triangles are there?", "kind": "short", "checks": {"expect_count": 1}},
        {
            "instruction": "What did I ask?",
            "kind": "language",
            "checks": {"refers_back_to": 0, "must_include": ["triangle|triangles"]},
        },
    ],
}
LANG = {"id": "x2", "image": None, "turns": [{"instruction": "List four fruits.", "kind": "language"}]}


def _write(tmp_path, objs, name="p.jsonl"):
    p = tmp_path / name
    lines = [o if isinstance(o, str) else json.dumps(o) for o in objs]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _with(obj, **changes):
    o = json.loads(json.dumps(obj))
    o.update(changes)
    return o


def _turn(obj, i, **changes):
    o = json.loads(json.dumps(obj))
    o["turns"][i].update(changes)
    return o


def test_loader_accepts_good_file(tmp_path):
    (tmp_path / "img").mkdir()
    blank_image().save(tmp_path / "img" / "a.png")
    path_conv = {
        "id": "x3",
        "image": {"path": "img/a.png"},
        "grounding": True,
        "turns": [{"instruction": "Describe the image in detail.", "kind": "open"}],
    }
    p = _write(tmp_path, [GOOD, "", LANG, path_conv])
    convs = load_dialog_probes(p)
    assert [c.id for c in convs] == ["x1", "x2", "x3"]
    assert [c.line for c in convs] == [1, 3, 4]
    assert convs[2].image.path == str(tmp_path / "img" / "a.png")
    assert resolve_image(convs[2].image).size == (64, 64)
    # grounding without grounding_other: the next conversation with a different image (cyclic)
    assert convs[2].grounding_other == convs[0].image
    assert convs[0].turns[1].checks.refers_back_to == 0
    assert convs[0].image.to_dict() == GOOD["image"]


BAD_CASES = [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "expected a JSON object"),
    (_with(GOOD, extra=1), "unknown key"),
    (_with(GOOD, id=""), "id must be a non-empty string"),
    ({k: v for k, v in GOOD.items() if k != "image"}, "missing 'image'"),
    (_with(GOOD, turns=[]), "non-empty list"),
    (_with(GOOD, image={"source": "flickr", "id": 3}), "source must be"),
    (_with(GOOD, image={"source": "easyvqa", "split": "val", "image_id": 3}), "split must be"),
    (_with(GOOD, image={"source": "easyvqa", "split": "test", "image_id": -1}), "non-negative integer"),
    (_with(GOOD, image={"source": "easyvqa", "split": "test", "image_id": True}), "non-negative integer"),
    (_with(GOOD, image={"source": "counting", "seed": 3}), "needs seed and index"),
    (_with(GOOD, image={"source": "counting", "seed": 3, "index": 1, "x": 1}), "unknown key"),
    (_with(GOOD, image={"path": ""}), "non-empty string"),
    (_turn(GOOD, 0, kind="vision"), "kind must be one of"),
    (_turn(GOOD, 0, instruction="  "), "instruction must be a non-empty string"),
    (_turn(GOOD, 0, colour="red"), "unknown key"),
    (_turn(GOOD, 0, checks={"expect_count": -1}), "non-negative integer"),
    (_turn(GOOD, 0, checks={"max_words": 0}), "positive integer"),
    (_turn(GOOD, 0, checks={"min_words": 5, "max_words": 3}), "min_words 5 > max_words 3"),
    (_turn(GOOD, 0, checks={"must_include": "red"}), "list of strings"),
    (_turn(GOOD, 0, checks={"must_include": ["|"]}), "no non-empty alternative"),
    (_turn(GOOD, 0, checks={"expect_short_answer": "?!"}), "empty once normalised"),
    (_turn(GOOD, 0, checks={"expect": "3"}), "unknown key"),
    (_turn(GOOD, 1, checks={"refers_back_to": 1, "must_include": ["triangle"]}), "earlier turn"),
    (_turn(GOOD, 1, checks={"refers_back_to": 0}), "needs must_include"),
    (_turn(GOOD, 1, checks={"refers_back_to": 0, "must_include": ["square"]}), "not stated in turn 0"),
    (
        _turn(
            GOOD,
            1,
            instruction="Count the triangles again?",
            checks={"refers_back_to": 0, "must_include": ["triangle|triangles"]},
        ),
        "already appears",
    ),
    (_turn(LANG, 0, kind="open"), "no image"),
    (_with(LANG, grounding=True), "needs an image"),
    (_with(GOOD, grounding="yes"), "true or false"),
    (_with(GOOD, grounding_other={"source": "counting", "seed": 3, "index": 2}), "only meaningful"),
    (_with(GOOD, grounding=True, grounding_other={"source": "counting", "seed": 3, "index": 1}), "own image"),
    (_with(GOOD, note=3), "'note' must be a string"),
]


@pytest.mark.parametrize("bad,message", BAD_CASES)
def test_loader_errors_name_file_and_line(tmp_path, bad, message):
    p = _write(tmp_path, [LANG, "", bad])  # the bad object is on line 3
    with pytest.raises(UserError) as ei:
        load_dialog_probes(p)
    err = ei.value
    assert err.line == 3 and str(err).startswith(f"{p}:3: ")
    assert message in str(err)


def test_loader_file_level_errors(tmp_path):
    p = _write(tmp_path, [GOOD, LANG, _with(GOOD, turns=GOOD["turns"])])
    with pytest.raises(UserError, match=r":3: duplicate id 'x1' \(first on line 1\)"):
        load_dialog_probes(p)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(UserError, match="no conversations"):
        load_dialog_probes(empty)
    with pytest.raises(UserError, match="not found"):
        load_dialog_probes(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="directory"):
        load_dialog_probes(tmp_path)
    lonely = _write(tmp_path, [_with(GOOD, grounding=True), LANG], name="lonely.jsonl")
    with pytest.raises(UserError, match="no other image"):
        load_dialog_probes(lonely)


def test_normalised_expectations_nonempty(convs):
    for c in convs:
        for t in c.turns:
            if t.checks.expect_short_answer is not None:
                assert normalise_answer(t.checks.expect_short_answer)
