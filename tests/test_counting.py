"""Counting: answer parser, per-sample metrics, aggregation, and the procedural image set."""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections import Counter

import pytest
from PIL import Image

from mmgpt_eval.data import counting_images as ci
from mmgpt_eval.data.counting_images import (
    COLOURS,
    DEFAULT_N,
    IMAGE_SIZE,
    KINDS,
    SPLIT_SEEDS,
    encode_png,
    generate_counting_set,
    make_counting_item,
    write_counting_set,
)
from mmgpt_eval.errors import UserError
from mmgpt_eval.metrics.counting import aggregate_counting, count_metrics, parse_count

# --------------------------------------------------------------------------- parse_count

PARSE_CASES = [
    # digits
    ("3", 3),
    ("There are 3 circles.", 3),
    ("3.", 3),
    ("(3)", 3),
    ("3,", 3),
    ("Answer: 3", 3),
    ("1,000", 1000),
    ("\uff13", 3),  # full-width digit, NFKC
    ("I count 7.", 7),
    ("- 3 circles", 3),  # a bullet, not a sign
    ("3rd", None),  # digits glued to letters are not numbers
    ("x3", None),
    # number words
    ("three", 3),
    ("THREE", 3),
    ("Seven!", 7),
    ("'three'", 3),
    ("There are eleven squares", 11),
    ("twenty", 20),
    ("twenty-one", 21),
    ("twenty one", 21),
    ("ninety nine", 99),
    # multipliers
    ("a dozen", 12),
    ("dozen", 12),
    ("two dozen", 24),
    ("half a dozen", 6),
    ("3 dozen", 36),
    ("one hundred and five", 100),
    # zero
    ("zero", 0),
    ("none", 0),
    ("None of them.", 0),
    ("nothing", 0),
    ("There are no circles", 0),
    ("No circles.", 0),
    ("There aren't any circles.", 0),
    ("There aren\u2019t any circles.", 0),
    ("There are not any", 0),
    ("There isn't a single circle", 0),
    # bare "no" is a yes/no answer, skipped
    ("No, there are 3", 3),
    ("No. Three.", 3),
    ("No.", None),
    ("no", None),
    ("no more than 4", 4),
    ("No there are 3", 3),
    ("No it is 2", 2),
    ("No\ncircles", None),  # a line break ends the determiner reading
    ("No.\n3", 3),
    ("no one", 1),  # "no" before a number word is skipped
    # a/an
    ("A circle.", 1),
    ("There is a circle", 1),
    ("There's an apple", 1),
    ("Only a square.", 1),
    ("Just a triangle", 1),
    ("There is a single circle", 1),
    ("a pair of circles", 2),
    ("It is a picture of circles", None),
    ("There is a total of 5 shapes", 5),
    ("There is a lot", None),
    # vague quantities are skipped
    ("a couple", None),
    ("A couple, maybe 3", 3),
    ("a few", None),
    ("several", None),
    ("some circles", None),
    ("many", None),
    ("dozens", None),
    # invalid first numbers stop the scan
    ("-3", None),
    ("\u22122", None),
    ("minus three", None),
    ("negative 2", None),
    ("3.5", None),
    ("2.0", None),
    ("3.5cm", None),
    ("three point five", None),
    ("1/2", None),
    ("1 1/2", None),
    ("one half", None),
    ("two thirds", None),
    ("3 and a half", None),
    ("half", None),
    ("-3 or 4", None),
    # first number wins
    ("3 or 4", 3),
    ("3-4", 3),
    ("There is a circle and 2 squares", 1),
    ("Two circles and three squares", 2),
    ("There are 4 circles, not 5.", 4),
    # no number at all
    ("", None),
    ("   ", None),
    ("...", None),
    ("I can't tell.", None),
    ("\u4e09\u4e2a", None),  # CJK numerals are not supported
    ("\U0001f600", None),
]


@pytest.mark.parametrize("text,expected", PARSE_CASES)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


def test_parse_count_rejects_non_str():
    with pytest.raises(TypeError):
        parse_count(3)  # type: ignore[arg-type]


def test_parse_count_long_text_is_fast():
    text = "word " * 5000 + "there are 7 circles"
    t = time.perf_counter()
    assert parse_count(text) == 7
    assert time.perf_counter() - t < 1.0


# --------------------------------------------------------------------------- metrics


def test_count_metrics_exact():
    m = count_metrics("There are 3 circles.", 3)
    assert m == {
        "parsed": 3,
        "true_count": 3,
        "exact": 1,
        "unparsable": 0,
        "abs_error": 0.0,
        "signed_error": 0,
        "off_by_one": 0,
    }


def test_count_metrics_off_by_one_and_error():
    m = count_metrics("four", 3)
    assert (m["exact"], m["off_by_one"], m["abs_error"], m["signed_error"]) == (0, 1, 1.0, 1)
    m = count_metrics("1", 3)
    assert (m["exact"], m["off_by_one"], m["abs_error"], m["signed_error"]) == (0, 0, 2.0, -2)


def test_count_metrics_unparsable_has_no_nan():
    m = count_metrics("I don't know", 2)
    assert m["parsed"] is None and m["unparsable"] == 1 and m["exact"] == 0
    assert m["abs_error"] is None and m["signed_error"] is None and m["off_by_one"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())


@pytest.mark.parametrize("bad", [-1, 1.0, True, "3", None])
def test_count_metrics_rejects_bad_truth(bad):
    with pytest.raises(ValueError):
        count_metrics("3", bad)


def test_aggregate_counting():
    recs = [
        count_metrics("3", 3),  # exact
        count_metrics("4", 3),  # off by one
        count_metrics("no idea", 3),  # unparsable
        count_metrics("zero", 0),  # exact
        count_metrics("5", 0),  # error 5
    ]
    agg = aggregate_counting(recs)
    assert agg["n"] == 5 and agg["n_parsable"] == 4
    assert agg["accuracy"] == pytest.approx(40.0)
    assert agg["mae"] == pytest.approx((0 + 1 + 0 + 5) / 4)
    assert agg["mean_signed_error"] == pytest.approx((0 + 1 + 0 + 5) / 4)
    assert agg["off_by_one_rate"] == pytest.approx(20.0)
    assert agg["unparsable_rate"] == pytest.approx(20.0)
    assert list(agg["accuracy_by_true_count"]) == [0, 3]
    assert agg["accuracy_by_true_count"] == {0: pytest.approx(50.0), 3: pytest.approx(100 / 3)}
    assert agg["n_by_true_count"] == {0: 2, 3: 3}
    assert agg["mae_by_true_count"] == {0: pytest.approx(2.5), 3: pytest.approx(0.5)}
    json.dumps(agg)  # JSON-serialisable, no NaN


def test_aggregate_counting_edge_cases():
    agg = aggregate_counting([])
    assert agg["n"] == 0 and agg["accuracy"] is None and agg["mae"] is None
    agg = aggregate_counting([count_metrics("?", 2)])
    assert agg["accuracy"] == 0.0 and agg["unparsable_rate"] == 100.0 and agg["mae"] is None
    assert agg["mae_by_true_count"] == {2: None}


# --------------------------------------------------------------------------- generator

# sha256 of (raw RGB pixels, PNG bytes) of fixed items: any change to the layout, raster or PNG
# encoder changes these, and so would a platform dependence.
GOLDEN = {
    (1, 0): (
        "dd0ea08728b8f4a20fa9963a98cff8a1b9cd4c1d22059291557006369398dd45",
        "bfcd539c79341f61eb7968ee227382e9df8257db96aa4fcd3a11af92f4ff949e",
    ),
    (1, 5): (
        "7518d41942851593d1bd2b9c6f7f227705019d2294955c68b1d2b044ce662575",
        "cf60c74b1182b770587a5b7e651be8d212855358ae9f21736826a3e3dc1c928c",
    ),
    (1, 21): (
        "2ef128a735e5387b3edce0ab8bea2a02c1823fb5cc2787a0cb9f2a78e6d2c7e2",
        "b874a1ad9bfb88e3da7dcf61320a6b28f4c91d643f6fde29825ef41194a8b9a7",
    ),
    (2, 7): (
        "654db371b3a0feabd76859933f819eb79b2c77bfe3bbab1f2187eb5b4f2afd4c",
        "b261463bb1e2529199b27fb9cf33fd0b4686c0206bfe8f815d48bd593e8f1635",
    ),
    (3, 10): (
        "48a2664d60639be2cf25e977ca0565c6a724490d85d48f1c397019c61ea31eec",
        "79d8cbad5dfe54fb3c4416464c6eafced141c85df25c9490af071e9d84d123c2",
    ),
}


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_golden_hashes(key):
    item = make_counting_item(*key)
    px_hash, png_hash = GOLDEN[key]
    assert hashlib.sha256(item.pixels()).hexdigest() == px_hash
    assert hashlib.sha256(item.png_bytes()).hexdigest() == png_hash


def test_item_questions_are_fixed():
    assert make_counting_item(1, 5).question == "How many triangles are there?"
    assert make_counting_item(1, 21).question == "How many orange shapes are there?"
    assert make_counting_item(1, 21).answer == 10


def test_png_decodes_to_pixels_and_has_no_metadata():
    for i in range(0, 60, 7):
        item = make_counting_item(1, i)
        png = item.png_bytes()
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (IMAGE_SIZE, IMAGE_SIZE)
            assert im.tobytes() == item.pixels()
            assert not im.info or set(im.info) <= {"dpi"}
        assert item.image().tobytes() == item.pixels()
        # chunks: IHDR, IDAT, IEND only
        pos, tags = 8, []
        while pos < len(png):
            length = int.from_bytes(png[pos : pos + 4], "big")
            tags.append(png[pos + 4 : pos + 8])
            pos += 12 + length
        assert tags == [b"IHDR", b"IDAT", b"IEND"]


def test_encode_png_roundtrip_arbitrary_pixels():
    import random

    rng = random.Random(0)
    w, h = 100, 4  # rows of 300 bytes: the all-zero rows need runs longer than 258
    data = bytes(rng.getrandbits(8) for _ in range(w * h * 3 - 600)) + bytes(600)
    with Image.open(io.BytesIO(encode_png(w, h, data))) as im:
        assert im.tobytes() == data
    with pytest.raises(ValueError):
        encode_png(2, 2, b"\x00" * 11)


def _check_item(item):
    assert item.answer == item.count(*item.asked)
    assert 0 <= len(item.shapes) <= 10
    boxes = [s.bbox for s in item.shapes]
    for s in item.shapes:
        x0, y0, x1, y1 = s.bbox
        assert s.kind in KINDS and s.colour in COLOURS
        assert x1 - x0 == y1 - y0 and 8 <= x1 - x0 <= 12
        assert 1 <= x0 and 1 <= y0 and x1 <= IMAGE_SIZE - 1 and y1 <= IMAGE_SIZE - 1
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert ci._separated(boxes[i], boxes[j]), (item.id, boxes[i], boxes[j])


def test_no_overlaps_over_many_items():
    for seed in (1, 2, 3):
        for i in range(1500):
            _check_item(make_counting_item(seed, i))


def test_grid_fallback_never_overlaps():
    for i in range(0, 600):
        item = make_counting_item(5, i, _force_grid=True)
        _check_item(item)


def test_pixels_match_metadata():
    for i in range(40):
        item = make_counting_item(1, i)
        px = item.pixels()
        owner = {}
        for s in item.shapes:
            x0, y0, x1, y1 = s.bbox
            seen = 0
            for y in range(y0, y1):
                for x in range(x0, x1):
                    owner[(x, y)] = s
                    o = (y * IMAGE_SIZE + x) * 3
                    if tuple(px[o : o + 3]) == COLOURS[s.colour]:
                        seen += 1
            assert seen >= 20, (item.id, s)  # every shape is visible
        for y in range(IMAGE_SIZE):
            for x in range(IMAGE_SIZE):
                o = (y * IMAGE_SIZE + x) * 3
                rgb = tuple(px[o : o + 3])
                if rgb != ci.BACKGROUND:
                    assert (x, y) in owner and rgb == COLOURS[owner[(x, y)].colour]


def test_balance_over_counts():
    items = generate_counting_set()
    assert len(items) == DEFAULT_N == 550
    by_count = Counter(it.answer for it in items)
    assert by_count == {c: 50 for c in range(11)}
    by_count_attr = Counter((it.answer, it.asked[0]) for it in items)
    assert set(by_count_attr.values()) == {25}
    # both attributes use every value
    assert {it.asked[1] for it in items if it.asked[0] == "kind"} == set(KINDS)
    assert {it.asked[1] for it in items if it.asked[0] == "colour"} == set(COLOURS)
    for it in items:
        if it.asked[0] == "kind":
            assert it.question == f"How many {it.asked[1]}s are there?"
        else:
            assert it.question == f"How many {it.asked[1]} shapes are there?"


def test_items_independent_of_n_and_deterministic():
    a = generate_counting_set(n=30, seed=1)
    b = generate_counting_set(n=10, seed=1, start=20)
    assert a[20:] == b
    assert generate_counting_set(5, seed=1) == generate_counting_set(5, seed=1)
    assert generate_counting_set(5, seed=1) != generate_counting_set(5, seed=2)
    assert a[3].id == "counting-s1-00003"


def test_rendering_is_fast():
    items = generate_counting_set(110, seed=9)
    t = time.perf_counter()
    for it in items:
        it.png_bytes()
    per_item = (time.perf_counter() - t) / len(items)
    assert per_item < 0.05, per_item


def test_write_counting_set(tmp_path):
    path = write_counting_set(tmp_path / "test", n=12, split="test")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 12
    items = generate_counting_set(12, seed=SPLIT_SEEDS["test"])
    for row, item in zip(rows, items):
        assert row["image"] == f"images/{item.id}.png"
        assert row["question"] == item.question
        assert row["answer"] == item.answer and isinstance(row["answer"], int)
        assert row["split"] == "test" and row["seed"] == SPLIT_SEEDS["test"]
        assert (tmp_path / "test" / row["image"]).read_bytes() == item.png_bytes()
    train = write_counting_set(tmp_path / "train", n=3, split="train")
    assert json.loads(train.read_text().splitlines()[0])["seed"] == SPLIT_SEEDS["train"]
    assert SPLIT_SEEDS["train"] != SPLIT_SEEDS["test"]
    with pytest.raises(UserError):
        write_counting_set(tmp_path / "bad", n=1, split="train", seed=SPLIT_SEEDS["test"])
    with pytest.raises(UserError):
        write_counting_set(tmp_path / "bad", n=1, split="val")


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_counting_item(1, -1)
    with pytest.raises(TypeError):
        make_counting_item("1", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        generate_counting_set(-1)
    with pytest.raises(ValueError):
        make_counting_item(1, 0).count("size", "big")
