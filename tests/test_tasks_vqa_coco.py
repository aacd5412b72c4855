"""vqav2/okvqa and coco tasks end to end on tiny official-format data."""

from __future__ import annotations

import json

import pytest

from datasets import make_coco_dataset, make_vqa_dataset
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.metrics.vqa import score_vqa
from mmgpt_eval.results import RunResults


@pytest.fixture(scope="module")
def vqa_data(tmp_path_factory):
    return make_vqa_dataset(tmp_path_factory.mktemp("vqa"))


@pytest.mark.parametrize("task,flag", [("vqa", "vqav2"), ("okvqa", "okvqa")])
def test_vqa_task(vqa_data, tmp_path, task, flag):
    out = tmp_path / "out"
    rc = main(
        [
            "-q",
            "run",
            "--model",
            "tiny",
            "--tasks",
            task,
            "--output-dir",
            str(out),
            "--no-progress",
            f"--{flag}-questions",
            str(vqa_data["questions"]),
            f"--{flag}-annotations",
            str(vqa_data["annotations"]),
            f"--{flag}-images",
            str(vqa_data["images"]),
        ]
    )
    assert rc == 0
    r = RunResults.load(out)
    name = "vqav2" if task == "vqa" else "okvqa"
    t = r.tasks[name]
    recs = r.samples(name)
    assert t.n_samples == 12 and len(recs) == 12
    mean = sum(x["metrics"]["accuracy"] for x in recs) / len(recs)
    assert t.metrics["accuracy"] == round(100 * mean, 2)
    assert t.breakdown["normalization"] == "official" and set(t.breakdown["perAnswerType"]) <= {
        "number",
        "yes/no",
        "other",
    }
    # equal to scoring the logged predictions with the official scorer directly
    q = json.loads(vqa_data["questions"].read_text())["questions"]
    a = json.loads(vqa_data["annotations"].read_text())["annotations"]
    preds = [{"question_id": int(x["id"]), "answer": x["prediction"]} for x in recs]
    assert score_vqa(q, a, preds).overall == t.metrics["accuracy"]


def test_vqa_openflamingo_mode_and_fewshot_template(vqa_data, tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "-q",
            "run",
            "--model",
            "tiny",
            "--tasks",
            "vqav2",
            "--output-dir",
            str(out),
            "--no-progress",
            "--vqav2-questions",
            str(vqa_data["questions"]),
            "--vqav2-annotations",
            str(vqa_data["annotations"]),
            "--vqav2-images",
            str(vqa_data["images"]),
            "--vqa-normalization",
            "openflamingo",
            "--template",
            "of-vqa",
            "--fewshot-zero-mode",
            "none",
            "--limit",
            "4",
        ]
    )
    assert rc == 0
    t = RunResults.load(out).tasks["vqav2"]
    assert t.breakdown["normalization"] == "openflamingo" and t.template["name"] == "of-vqa"
    assert t.generation["num_beams"] == 3 and t.generation["max_new_tokens"] == 5


def test_vqa_missing_data_fails_before_model_load(tmp_path, capsys, monkeypatch):
    import mmgpt_eval.api as api

    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("model loaded before data check"))
    rc = main(
        [
            "run",
            "--tasks",
            "vqa",
            "--output-dir",
            str(tmp_path),
            "--vqav2-questions",
            str(tmp_path / "q.json"),
            "--vqav2-annotations",
            str(tmp_path / "a.json"),
            "--vqav2-images",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"vqav2: {tmp_path / 'q.json'}, {tmp_path / 'a.json'} (" in err and "data not found" in err
    rc = main(["run", "--tasks", "vqa", "--output-dir", str(tmp_path), "--data-root", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "nothing" / "vqav2") in err and "mmgpt-eval data check" in err


@pytest.mark.java
def test_coco_task(tmp_path):
    data = make_coco_dataset(tmp_path / "coco")
    out = tmp_path / "out"
    rc = main(
        [
            "-q",
            "run",
            "--model",
            "tiny",
            "--tasks",
            "coco",
            "--output-dir",
            str(out),
            "--no-progress",
            "--coco-karpathy-json",
            str(data["karpathy_json"]),
            "--coco-images",
            str(data["images"]),
            "--max-new-tokens",
            "8",
        ]
    )
    assert rc == 0
    r = RunResults.load(out)
    t = r.tasks["coco"]
    assert t.n_samples == 5 and set(t.metrics) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    recs = r.samples("coco")
    per_image = [x["metrics"]["CIDEr"] for x in recs]
    assert abs(sum(per_image) / len(per_image) - t.metrics["CIDEr"]) < 1e-5
    assert any("SPICE" in n for n in t.notes) and any("IDF" in n for n in t.notes)


def test_coco_needs_java(tmp_path, monkeypatch):
    import shutil

    from mmgpt_eval_tasks.coco import COCOCaptions

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "java" else real(name, *a, **k))
    with pytest.raises(UserError, match="Java is required"):
        COCOCaptions({"coco_images": str(tmp_path)}).load()
