"""`mmgpt-eval predict`: outputs, batch-size invariance, and every bad input (exit 2, one line, no file)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmgpt_eval.cli import main

PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Image:\n<image>\n\n### Instruction:\n{q}\n\n### Response:\n"
)


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, color in enumerate(["red", "blue", "green"]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (64, 64), color).save(p)
        paths.append(p)
    return paths


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _predict(tmp_path, rows, *extra):
    inp = _write(tmp_path / "cases.jsonl", rows)
    out = tmp_path / "out.jsonl"
    rc = main(
        [
            "-q",
            "predict",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--input",
            str(inp),
            "--output",
            str(out),
            "--max-new-tokens",
            "6",
            *extra,
        ]
    )
    return rc, out


def test_predict_outputs_and_batch_invariance(tmp_path, images):
    rows = [
        {"id": f"p{i}", "prompt": PROMPT.format(q=q), "images": [images[i % 3].name]}
        for i, q in enumerate(
            [
                "what color is the shape?",
                "is there a circle?",
                "how many shapes?",
                "Describe the image in detail.",
                "what is the shape?",
            ]
        )
    ]
    rows += [{"id": "q1", "question": "what color?", "images": [str(images[0])]}]
    rows += [{"id": 7, "prompt": "Write a poem.", "images": []}]
    rc, out = _predict(tmp_path, rows, "--batch-size", "1")
    assert rc == 0
    one = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in one] == [f"p{i}" for i in range(5)] + ["q1", "7"]
    assert all(set(r) == {"id", "text", "token_ids", "prompt_hash"} for r in one)
    rc, out = _predict(tmp_path, rows, "--batch-size", "4")
    assert rc == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == one


BAD = [
    (
        "missing image",
        [{"id": "a", "prompt": PROMPT.format(q="x"), "images": ["nope.png"]}],
        "cases.jsonl:1: image not found",
    ),
    (
        "count mismatch",
        [{"id": "a", "prompt": PROMPT.format(q="x"), "images": []}],
        "cases.jsonl:1: the prompt has 1 <image> token(s) but 0 image(s)",
    ),
    ("malformed line", [{"id": "a", "prompt": "hi"}, "{not json"], "cases.jsonl:2: malformed JSON line"),
    ("missing id", [{"prompt": "hi"}], "cases.jsonl:1: missing key 'id'"),
    ("duplicate id", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], "cases.jsonl:2: duplicate id 'a'"),
    ("no prompt", [{"id": "a"}], "cases.jsonl:1: missing key 'prompt'"),
    (
        "template images",
        [{"id": "a", "question": "q", "images": []}],
        "template mmgpt takes 1 image(s) but the line has 0",
    ),
]


@pytest.mark.parametrize("name,rows,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input(tmp_path, capsys, name, rows, msg):
    rc, out = _predict(tmp_path, rows)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("mmgpt-eval: error:")
    assert msg in err[0]
    assert not out.exists()


def test_corrupt_image(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rc, out = _predict(tmp_path, [{"id": "a", "prompt": PROMPT.format(q="x"), "images": ["bad.png"]}])
    err = capsys.readouterr().err
    assert rc == 2 and "cases.jsonl:1: image" in err and "not a readable image" in err and not out.exists()


def test_unknown_template(tmp_path, capsys, images):
    rc, out = _predict(tmp_path, [{"id": "a", "question": "q", "images": [str(images[0])]}], "--template", "nope")
    assert rc == 2 and "unknown template 'nope'" in capsys.readouterr().err and not out.exists()


def test_missing_input_file(tmp_path, capsys):
    rc = main(["predict", "--model", "tiny", "--input", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "o")])
    assert rc == 2 and "none.jsonl: file not found" in capsys.readouterr().err
