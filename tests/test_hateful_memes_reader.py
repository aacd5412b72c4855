"""The Hateful Memes reader: a malformed line is a one-line UserError naming file:line (not a TypeError)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmgpt_eval.data.classification import load_hateful_memes
from mmgpt_eval.errors import UserError


def _write(tmp_path, lines: list[dict]):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "img" / "01.png")
    p = tmp_path / "dev.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return p


def test_reads_a_good_file(tmp_path):
    p = _write(tmp_path, [{"id": 1, "img": "img/01.png", "label": 1, "text": "a meme"}])
    (s,) = load_hateful_memes(p, tmp_path / "img")
    assert (s.id, s.references, s.fields["ocr"]) == ("1", "yes", "a meme")


@pytest.mark.parametrize(
    "line, message",
    [
        ({"id": 1}, "expected a Hateful Memes line with id, img, label and text"),
        ({"id": 1, "img": "img/01.png", "label": 2, "text": "t"}, "label must be 0 or 1, got 2"),
        ({"id": 1, "img": "img/02.png", "label": 0, "text": "t"}, "image 02.png not found in"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path, line, message):
    good = {"id": 0, "img": "img/01.png", "label": 0, "text": "t"}
    p = _write(tmp_path, [good, line])
    with pytest.raises(UserError) as e:
        load_hateful_memes(p, tmp_path / "img")
    assert str(e.value).startswith(f"{p}:2: {message}")
