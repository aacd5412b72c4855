"""``mmgpt-eval score``: output files with exactly the documented keys; bad input -> one error line,
exit code 2, no output file."""

from __future__ import annotations

import json
import shutil

import pytest

from mmgpt_eval.cli import main

VQA_KEYS = {"overall", "perQuestionType", "perAnswerType", "perQuestion", "normalization"}
COCO_KEYS = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "perImageCIDEr"}
META = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "license": {}}


def _write(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return str(path)


@pytest.fixture
def vqa_files(tmp_path):
    anns = []
    for qid, answers, qtype, atype in [
        (1001, ["yes"] * 10, "is the", "yes/no"),
        (1002, ["2"] * 7 + ["3"] * 3, "how many", "number"),
        (2001, ["red"] * 4 + ["dark red"] * 3 + ["maroon"] * 3, "what color is the", "other"),
    ]:
        anns.append(
            {
                "question_id": qid,
                "image_id": qid // 1000,
                "question_type": qtype,
                "answer_type": atype,
                "multiple_choice_answer": answers[0],
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)
                ],
            }
        )
    questions = [{"question_id": a["question_id"], "image_id": a["image_id"], "question": "?"} for a in anns]
    preds = [
        {"question_id": 1001, "answer": "Yes"},
        {"question_id": 1002, "answer": "two"},
        {"question_id": 2001, "answer": "dark red"},
    ]
    return {
        "q": _write(tmp_path / "q.json", dict(META, questions=questions)),
        "a": _write(tmp_path / "a.json", dict(META, annotations=anns)),
        "p": _write(tmp_path / "p.json", preds),
        "out": tmp_path / "out" / "scores.json",
        "tmp": tmp_path,
        "preds": preds,
    }


def _vqa_argv(f, preds_path=None, *extra):
    return [
        "score",
        "vqav2",
        "--questions",
        f["q"],
        "--annotations",
        f["a"],
        "--predictions",
        preds_path or f["p"],
        "--output",
        str(f["out"]),
        *extra,
    ]


def _assert_user_error(rc, capsys, out_path, *fragments):
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mmgpt-eval: error: ")
    for frag in fragments:
        assert frag in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out_path.exists()
    assert not list(out_path.parent.glob(".*.tmp")) if out_path.parent.exists() else True
    return lines[0]


def test_vqa_success(vqa_files, capsys):
    f = vqa_files
    assert main(_vqa_argv(f)) == 0
    out = json.loads(f["out"].read_text())
    assert set(out) == VQA_KEYS
    # 1001: "Yes" vs ten "yes" -> 0 officially; 1002: "two" -> "2", 7 matches -> 100;
    # 2001: "dark red" matches 3 -> 90
    assert out["perQuestion"] == {"1001": 0.0, "1002": 100.0, "2001": 90.0}
    assert out["overall"] == round(100 * (0 + 1 + 0.9) / 3, 2) == 63.33
    assert out["perAnswerType"] == {"yes/no": 0.0, "number": 100.0, "other": 90.0}
    assert out["normalization"] == "official"
    stdout = capsys.readouterr().out
    assert "63.33" in stdout and "how many" in stdout


def test_vqa_openflamingo_and_okvqa(vqa_files):
    f = vqa_files
    argv = _vqa_argv(f, None, "--vqa-normalization", "openflamingo")
    argv[1] = "okvqa"
    assert main(argv) == 0
    out = json.loads(f["out"].read_text())
    assert set(out) == VQA_KEYS and out["normalization"] == "openflamingo"
    assert out["perQuestion"]["1001"] == 100.0


def test_vqa_without_output(vqa_files, capsys):
    f = vqa_files
    argv = _vqa_argv(f)[:-2]
    assert main(argv) == 0
    assert "overall" in capsys.readouterr().out
    assert not f["out"].exists()


@pytest.mark.parametrize(
    "preds, fragments",
    [
        ([{"question_id": 1001, "answer": "yes"}], ["2 annotated questions have no prediction (e.g. 1002, 2001)"]),
        ("extra", ["1 predictions are for unknown question ids (e.g. 999)"]),
        ("dup", ["duplicate prediction for question_id 1001"]),
        ([{"question_id": 1001, "answer": "yes"}, {"question_id": 1002}], ["predictions entry 1 has no 'answer' key"]),
        ([{"question_id": 1001, "answer": 3}], ["'answer' must be a string"]),
        ({"question_id": 1001}, ["predictions must be a list"]),
    ],
)
def test_vqa_bad_predictions(vqa_files, capsys, preds, fragments):
    f = vqa_files
    if preds == "extra":
        preds = f["preds"] + [{"question_id": 999, "answer": "x"}]
    elif preds == "dup":
        preds = f["preds"] + [f["preds"][0]]
    p = _write(f["tmp"] / "bad.json", preds)
    line = _assert_user_error(main(_vqa_argv(f, p)), capsys, f["out"], *fragments)
    assert p in line  # names the file


def test_vqa_malformed_json(vqa_files, capsys):
    f = vqa_files
    p = f["tmp"] / "broken.json"
    p.write_text('[{"question_id": 1001, "answer": "yes"},\n  {"question_id": }]', encoding="utf-8")
    _assert_user_error(main(_vqa_argv(f, str(p))), capsys, f["out"], str(p), "malformed JSON at line 2 column")


def test_vqa_bad_annotation_files(vqa_files, capsys):
    f = vqa_files
    a = json.loads((f["tmp"] / "a.json").read_text())
    del a["annotations"][1]["answers"]
    bad = _write(f["tmp"] / "bad_a.json", a)
    argv = _vqa_argv(f)
    argv[5] = bad
    _assert_user_error(main(argv), capsys, f["out"], bad, "annotations entry 1 (question_id 1002) has no 'answers' key")
    argv[5] = _write(f["tmp"] / "list_a.json", [])
    _assert_user_error(main(argv), capsys, f["out"], "expected a JSON object with a 'annotations' list")
    argv[5] = str(f["tmp"] / "missing.json")
    _assert_user_error(main(argv), capsys, f["out"], "missing.json: file not found")


def test_score_without_benchmark(capsys):
    assert main(["score"]) == 2
    assert capsys.readouterr().err.startswith("mmgpt-eval: error: choose what to score")


# ------------------------------------------------------------------------------------------------
# COCO
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def coco_files(tmp_path):
    refs = {
        1: [
            "A dog runs on the grass.",
            "a brown dog running",
            "The dog is running in a field.",
            "A dog plays outside.",
            "Dog running on a lawn.",
        ],
        2: [
            "Two cats sleep on a sofa.",
            "cats sleeping on a couch",
            "a pair of cats on a couch",
            "Two kittens asleep.",
            "The cats nap together.",
        ],
        3: [
            "A man rides a bike.",
            "a person riding a bicycle",
            "a cyclist on the street",
            "Man biking down a road.",
            "Someone on a bicycle in the city.",
        ],
    }
    anns, k = [], 0
    for img, caps in refs.items():
        for c in caps:
            k += 1
            anns.append({"image_id": img, "id": k, "caption": c})
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in (1, 2, 3, 4)]
    preds = [
        {"image_id": 1, "caption": "a dog running on the grass"},
        {"image_id": 2, "caption": "two cats sleeping on a couch"},
        {"image_id": 3, "caption": "a man riding a bike"},
    ]
    return {
        "a": _write(tmp_path / "captions.json", {"images": images, "annotations": anns}),
        "p": _write(tmp_path / "p.json", preds),
        "out": tmp_path / "coco_scores.json",
        "tmp": tmp_path,
        "preds": preds,
    }


def _coco_argv(f, preds_path=None, ann_path=None):
    return [
        "score",
        "coco",
        "--annotations",
        ann_path or f["a"],
        "--predictions",
        preds_path or f["p"],
        "--output",
        str(f["out"]),
    ]


@pytest.mark.java
@pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")
def test_coco_success(coco_files, capsys):
    f = coco_files
    assert main(_coco_argv(f)) == 0
    out = json.loads(f["out"].read_text())
    assert set(out) == COCO_KEYS
    assert set(out["perImageCIDEr"]) == {"1", "2", "3"}
    assert sum(out["perImageCIDEr"].values()) / 3 == pytest.approx(out["CIDEr"], abs=1e-12)
    assert all(isinstance(out[k], float) for k in COCO_KEYS - {"perImageCIDEr"})
    stdout = capsys.readouterr().out
    assert "SPICE not computed" in stdout and "CIDEr" in stdout


@pytest.mark.parametrize(
    "preds, fragments",
    [
        ("dup", ["1 images have more than one predicted caption (e.g. 1)"]),
        (
            [{"image_id": 1, "caption": "x"}, {"image_id": 7, "caption": "y"}, {"image_id": 8, "caption": "z"}],
            ["2 predicted image ids are not in the annotations (e.g. 7, 8)"],
        ),
        ([{"image_id": "1", "caption": "x"}], ["integers vs strings"]),
        ([{"image_id": 1}], ["predictions entry 0 has no 'caption' key"]),
        ([{"caption": "x"}], ["predictions entry 0 has no 'image_id' key"]),
        ([{"image_id": 1, "caption": ["x"]}], ["'caption' must be a string"]),
        ([], ["no predicted captions"]),
    ],
)
def test_coco_bad_predictions(coco_files, capsys, preds, fragments):
    if shutil.which("java") is None:
        pytest.skip("Java is checked first")
    f = coco_files
    if preds == "dup":
        preds = f["preds"] + [{"image_id": 1, "caption": "another"}]
    p = _write(f["tmp"] / "bad.json", preds)
    line = _assert_user_error(main(_coco_argv(f, p)), capsys, f["out"], *fragments)
    assert p in line


def test_coco_bad_annotations(coco_files, capsys):
    if shutil.which("java") is None:
        pytest.skip("Java is checked first")
    f = coco_files
    broken = f["tmp"] / "broken.json"
    broken.write_text('{"annotations": [\n{"image_id": 1 "caption": "x"}]}', encoding="utf-8")
    _assert_user_error(
        main(_coco_argv(f, None, str(broken))), capsys, f["out"], str(broken), "malformed JSON at line 2"
    )
    bad = _write(f["tmp"] / "bad_a.json", {"annotations": [{"image_id": 1, "caption": "x"}, {"image_id": 2}]})
    _assert_user_error(main(_coco_argv(f, None, bad)), capsys, f["out"], "annotations entry 1 has no 'caption' key")
    bad = _write(f["tmp"] / "bad_b.json", {"images": []})
    _assert_user_error(main(_coco_argv(f, None, bad)), capsys, f["out"], "'annotations' list")


def test_coco_java_missing(coco_files, capsys, monkeypatch):
    f = coco_files
    monkeypatch.setenv("PATH", str(f["tmp"]))
    _assert_user_error(
        main(_coco_argv(f)), capsys, f["out"], "Java is required", "apt-get install default-jre-headless"
    )
