"""Data files cannot make mmgpt-eval read images elsewhere on disk, and a dialogue probe file with an
unreadable image fails before any model loads (with nothing written)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import mmgpt_eval.api as api
from mmgpt_eval.cli import main


@pytest.fixture
def no_load(monkeypatch):
    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("a model was loaded"))


def _run(tmp_path, capsys, *args):
    rc = main(["run", "--model", "tiny-openflamingo", "--output-dir", str(tmp_path / "out"), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_tallyqa_image_outside_its_folder_is_refused(tmp_path, capsys, no_load):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    data = tmp_path / "data"
    data.mkdir()
    for image in ("../secret.png", str(secret)):
        (data / "t.json").write_text(json.dumps([{"image": image, "question": "How many?", "answer": 1}]))
        rc, err = _run(tmp_path, capsys, "--tasks", "counting", "--counting-tallyqa-json", str(data / "t.json"))
        assert rc == 2 and "t.json" in err and ("leaves the folder" in err or "is absolute" in err), err
        assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_karpathy_filepath_outside_the_image_folder_is_refused(tmp_path, capsys, no_load):
    import shutil

    if shutil.which("java") is None:
        pytest.skip("the coco task needs Java")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")
    doc = {
        "images": [{"split": "test", "filepath": "..", "filename": "x.jpg", "cocoid": 1, "sentences": [{"raw": "a"}]}]
    }
    (tmp_path / "k.json").write_text(json.dumps(doc))
    rc, err = _run(
        tmp_path,
        capsys,
        "--tasks",
        "coco",
        "--coco-karpathy-json",
        str(tmp_path / "k.json"),
        "--coco-images",
        str(images),
    )
    assert rc == 2 and "leaves the folder" in err and "k.json" in err, err


def test_dialog_probe_image_outside_its_folder_is_refused(tmp_path, capsys, no_load):
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    (tmp_path / "d").mkdir()
    conv = {"id": "c1", "image": {"path": "../outside.png"}, "turns": [{"instruction": "Describe it.", "kind": "open"}]}
    (tmp_path / "d" / "probes.jsonl").write_text(json.dumps(conv) + "\n")
    rc, err = _run(tmp_path, capsys, "--tasks", "dialog", "--dialog-probes", str(tmp_path / "d" / "probes.jsonl"))
    assert rc == 2 and "leaves the folder" in err and "probes.jsonl" in err, err


def test_dialog_probe_with_an_unreadable_image_fails_before_the_model_loads(tmp_path, capsys, no_load):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    conv = {"id": "c1", "image": {"path": "broken.png"}, "turns": [{"instruction": "Describe it.", "kind": "open"}]}
    (tmp_path / "probes.jsonl").write_text(json.dumps(conv) + "\n")
    rc, err = _run(tmp_path, capsys, "--tasks", "dialog", "--dialog-probes", str(tmp_path / "probes.jsonl"))
    assert rc == 2 and "c1" in err and "broken.png" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # no partial output folder
