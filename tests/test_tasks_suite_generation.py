"""flickr30k, textvqa and vizwiz end to end on tiny official-format data (tests/suite_fixtures.py) with the
tiny MultiModal-GPT (tiny-openflamingo + tiny-mmgpt: it names colours and shapes, so accuracies and
caption scores are neither all 0 nor all 100): explicit flags, the data-root layout, ``data check``,
resume, the few-shot templates, world size 2 under torchrun -- and every metric recomputed here from the
per-sample log by an independent path (the plain VQA accuracy formula; pycocoevalcap called directly)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmgpt_eval.cli import main
from mmgpt_eval.metrics.vqa import normalize_official
from mmgpt_eval.records import read_samples
from mmgpt_eval.results import RunResults
from suite_fixtures import make_suite_data_root, make_textvqa, make_vizwiz

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("flickr30k", "textvqa", "vizwiz")
RUN_TASKS = tuple(t for t in TASKS if t != "flickr30k" or shutil.which("java"))  # flickr30k's metrics need Java
MODEL = ["--model", "tiny-openflamingo", "--ckpt", "tiny-mmgpt"]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")


def _run(*args: str) -> int:
    return main(["-q", "run", *MODEL, "--no-progress", "--no-report", *args])


def _flags(data: dict) -> list[str]:
    """Every file of the three tasks as explicit flags (the same files the data root fills in)."""
    f, t, v = data["flickr30k"], data["textvqa"], data["vizwiz"]
    return [
        "--flickr30k-karpathy-json",
        str(f["karpathy_json"]),
        "--flickr30k-images",
        str(f["images"]),
        "--textvqa-val-json",
        str(t["val_json"]),
        "--textvqa-images",
        str(t["images"]),
        "--textvqa-train-json",
        str(t["train_json"]),
        "--vizwiz-annotations",
        str(v["annotations"]),
        "--vizwiz-images",
        str(v["images"]),
        "--vizwiz-train-annotations",
        str(v["train_annotations"]),
        "--vizwiz-train-images",
        str(v["train_images"]),
    ]


def _records(run_dir: Path, task: str) -> dict[str, dict]:
    return {r["id"]: r for r in read_samples(run_dir / "samples" / f"{task}.jsonl")}


# ------------------------------------------------------------------------------------------ independent metrics
def plain_vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """The VQA accuracy as the papers define it: for each of the 10 leave-one-out subsets of the human
    answers, min(#humans in the subset who gave the prediction / 3, 1); the mean over the subsets."""
    subsets = [answers[:i] + answers[i + 1 :] for i in range(len(answers))]
    return sum(min(sum(1 for a in subset if a == prediction) / 3, 1) for subset in subsets) / len(subsets)


def check_vqa_metrics(records: dict[str, dict], answers: dict[str, list[str]], accuracy: float) -> list[float]:
    """Recompute every per-sample accuracy and the overall accuracy from the logged predictions. The
    fixture answers are fixed points of the official normalisation and always disagree, so every mode
    scores normalise(prediction) against the answers as written."""
    for refs in answers.values():
        assert all(normalize_official(a) == a for a in refs) and len(set(refs)) > 1
    accs = []
    for sid, rec in records.items():
        assert rec["references"] == answers[sid]
        acc = plain_vqa_accuracy(normalize_official(rec["prediction"]), answers[sid])
        assert rec["metrics"]["accuracy"] == pytest.approx(acc, abs=1e-12), (sid, rec["prediction"])
        accs.append(acc)
    assert accuracy == pytest.approx(round(100 * sum(accs) / len(accs), 2), abs=1e-9)
    return accs


def pycocoevalcap_scores(gts: dict[str, list[str]], res: dict[str, str]) -> tuple[dict, dict]:
    """COCOEvalCap.evaluate() minus SPICE, with pycocoevalcap's own classes (its own METEOR JVM)."""
    import contextlib
    import io

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    g = tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()})
    r = tok.tokenize({k: [{"caption": res[k]}] for k in gts})
    meteor = Meteor()
    out, per = {}, {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for scorer, names in (
                (Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]),
                (meteor, ["METEOR"]),
                (Rouge(), ["ROUGE_L"]),
                (Cider(), ["CIDEr"]),
            ):
                score, scores = scorer.compute_score(g, r)
                if len(names) == 1:
                    score, scores = [score], [scores]
                for n, sc, scs in zip(names, score, scores):
                    out[n], per[n] = float(sc), dict(zip(gts, [float(x) for x in scs]))
    finally:
        meteor.meteor_p.stdin.close()
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()
    return out, per


# ------------------------------------------------------------------------------------------ shared runs
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_suite_data_root(tmp_path_factory.mktemp("suite") / "data")


@pytest.fixture(scope="module")
def flag_run(data, tmp_path_factory):
    """The three tasks in one run, every file given as a flag."""
    out = tmp_path_factory.mktemp("flags") / "out"
    assert _run("--tasks", ",".join(RUN_TASKS), "--output-dir", str(out), *_flags(data)) == 0
    return out


def test_tasks_lists_the_new_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in TASKS:
        assert name in out


@needs_java
def test_flickr30k_metrics_equal_pycocoevalcap(data, flag_run):
    r = RunResults.load(flag_run)
    t = r.tasks["flickr30k"]
    recs = _records(flag_run, "flickr30k")
    assert sorted(recs) == sorted(data["flickr30k"]["test_ids"]) and t.n_samples == 4  # the test split only
    assert t.primary_metric == "CIDEr" and t.template["name"] == "mmgpt"
    gts = json.loads(data["flickr30k"]["karpathy_json"].read_text())["images"]
    gts = {Path(e["filename"]).stem: [s["raw"] for s in e["sentences"]] for e in gts if e["split"] == "test"}
    ref, ref_per = pycocoevalcap_scores(gts, {k: recs[k]["prediction"] for k in gts})
    assert set(t.metrics) == set(ref)
    for k, v in ref.items():
        assert t.metrics[k] == pytest.approx(v, abs=1e-6), k
    for sid, rec in recs.items():
        assert rec["metrics"]["CIDEr"] == pytest.approx(ref_per["CIDEr"][sid], abs=1e-9)
        assert rec["metrics"]["ROUGE_L"] == pytest.approx(ref_per["ROUGE_L"][sid], abs=1e-9)
    assert t.metrics["CIDEr"] > 0.1  # the tiny MultiModal-GPT names colours and shapes


def test_textvqa_metrics_equal_the_plain_formula(data, flag_run):
    t = RunResults.load(flag_run).tasks["textvqa"]
    recs = _records(flag_run, "textvqa")
    assert sorted(recs) == sorted(data["textvqa"]["answers"]) and t.n_samples == 6  # TextVQA's question ids
    assert t.breakdown == {"normalization": "official", "data_format": "official"}
    accs = check_vqa_metrics(recs, data["textvqa"]["answers"], t.metrics["accuracy"])
    assert 0 < t.metrics["accuracy"] < 100 and any(0 < a < 1 for a in accs)  # full and partial credit


def test_vizwiz_metrics_and_breakdown_equal_the_plain_formula(data, flag_run):
    t = RunResults.load(flag_run).tasks["vizwiz"]
    recs = _records(flag_run, "vizwiz")
    entries = data["vizwiz"]["entries"]
    assert sorted(recs) == sorted(entries) == [f"VizWiz_val_{i:08d}" for i in range(5)]  # ids: image name stems
    accs = dict(zip(recs, check_vqa_metrics(recs, data["vizwiz"]["answers"], t.metrics["accuracy"])))
    assert 0 < t.metrics["accuracy"] < 100
    by_type: dict[str, list[float]] = {}
    by_answerable: dict[str, list[float]] = {}
    for sid, e in entries.items():
        by_type.setdefault(e["answer_type"], []).append(accs[sid])
        by_answerable.setdefault("answerable" if e["answerable"] else "unanswerable", []).append(accs[sid])
    assert t.breakdown["perAnswerType"] == {
        k: pytest.approx(round(100 * sum(v) / len(v), 2)) for k, v in by_type.items()
    }
    assert t.breakdown["n_by_answer_type"] == {"number": 1, "other": 2, "unanswerable": 1, "yes/no": 1}
    assert t.breakdown["accuracy_by_answerable"] == {
        k: pytest.approx(round(100 * sum(v) / len(v), 2)) for k, v in by_answerable.items()
    }
    assert t.breakdown["n_by_answerable"] == {"answerable": 4, "unanswerable": 1}
    assert t.breakdown["normalization"] == "official"


def test_data_root_run_resumes_every_sample(data, flag_run, tmp_path):
    """The data root's fixed layout names the same files as the flags: a second run into (a copy of) the
    same output folder with --data-root re-uses every sample and scores the same."""
    out = tmp_path / "out"
    shutil.copytree(flag_run, out)
    assert _run("--tasks", ",".join(RUN_TASKS), "--output-dir", str(out), "--data-root", str(data["root"])) == 0
    before, after = RunResults.load(flag_run), RunResults.load(out)
    for task in RUN_TASKS:
        t = after.tasks[task]
        assert t.timing["samples_resumed"] == t.n_samples and t.timing["samples_generated"] == 0, task
        assert t.metrics == before.tasks[task].metrics and t.breakdown == before.tasks[task].breakdown
        assert t.options == before.tasks[task].options
    assert after.tasks["textvqa"].options["textvqa_val_json"] == str(
        data["root"] / "textvqa" / "TextVQA_0.5.1_val.json"
    )


def test_textvqa_vqav2_format_files_give_the_same_samples(data, flag_run, tmp_path):
    """OpenFlamingo's VQAv2-format conversion instead of the official JSON: same ids, answers, prompts."""
    t = data["textvqa"]
    out = tmp_path / "out"
    assert (
        _run(
            "--tasks",
            "textvqa",
            "--output-dir",
            str(out),
            "--limit",
            "3",
            "--textvqa-questions",
            str(t["questions"]),
            "--textvqa-annotations",
            str(t["annotations"]),
            "--textvqa-images",
            str(t["images"]),
        )
        == 0
    )
    res = RunResults.load(out).tasks["textvqa"]
    assert res.breakdown["data_format"] == "vqav2" and res.n_samples == 3 and res.n_available == 6
    official = _records(flag_run, "textvqa")
    for sid, rec in _records(out, "textvqa").items():
        for k in ("prompt_sha256", "prediction", "references", "metrics"):
            assert rec[k] == official[sid][k], (sid, k)


def test_fewshot_of_vqa_with_the_train_files(data, tmp_path):
    out = tmp_path / "out"
    assert (
        _run(
            "--tasks",
            "textvqa,vizwiz",
            "--output-dir",
            str(out),
            "--data-root",
            str(data["root"]),
            "--limit",
            "2",
            "--num-fewshot",
            "2",
            "--template",
            "of-vqa",
            "--vqa-normalization",
            "openflamingo",
        )
        == 0
    )
    r = RunResults.load(out)
    train_answers = {
        "textvqa": {e["answers"][0] for e in json.loads(data["textvqa"]["train_json"].read_text())["data"]},
        "vizwiz": {e["answers"][0]["answer"] for e in json.loads(data["vizwiz"]["train_annotations"].read_text())},
    }
    for task, answers in (("textvqa", data["textvqa"]["answers"]), ("vizwiz", data["vizwiz"]["answers"])):
        t = r.tasks[task]
        assert t.template["name"] == "of-vqa" and t.generation["num_beams"] == 3 and t.n_samples == 2
        assert t.breakdown["normalization"] == "openflamingo"
        recs = _records(out, task)
        for rec in recs.values():
            assert rec["prompt"].count("<image>") == 3 and len(rec["images"]) == 3
            demo_answers = {
                line.split("Short answer:")[1].split("<|endofchunk|>")[0] for line in rec["prompt"].splitlines()[:2]
            }
            assert demo_answers <= train_answers[task]
        check_vqa_metrics(recs, {k: answers[k] for k in recs}, t.metrics["accuracy"])


@needs_java
def test_fewshot_of_caption_with_the_train_split(data, tmp_path):
    out = tmp_path / "out"
    assert (
        _run(
            "--tasks",
            "flickr30k",
            "--output-dir",
            str(out),
            "--data-root",
            str(data["root"]),
            "--limit",
            "2",
            "--num-fewshot",
            "2",
            "--template",
            "of-caption",
            "--max-new-tokens",
            "8",
        )
        == 0
    )
    t = RunResults.load(out).tasks["flickr30k"]
    assert t.template["name"] == "of-caption" and t.n_samples == 2
    doc = json.loads(data["flickr30k"]["karpathy_json"].read_text())["images"]
    train_captions = {e["sentences"][0]["raw"] for e in doc if e["split"] == "train"}
    for rec in _records(out, "flickr30k").values():
        assert rec["prompt"].count("<image>") == 3 and len(rec["images"]) == 3
        assert {
            line.split("Output:")[1].split("<|endofchunk|>")[0] for line in rec["prompt"].splitlines()[:2]
        } == train_captions


# ------------------------------------------------------------------------------------------ data check
@pytest.mark.parametrize(
    "task,missing,source",
    [
        ("flickr30k", "flickr30k/dataset_flickr30k.json", "cs.stanford.edu/people/karpathy/deepimagesent"),
        ("flickr30k", "flickr30k/flickr30k-images", "shannon.cs.illinois.edu/DenotationGraph"),
        ("textvqa", "textvqa/TextVQA_0.5.1_val.json", "textvqa.org/dataset"),
        ("textvqa", "textvqa/train_images", "textvqa.org/dataset"),
        ("vizwiz", "vizwiz/val.json", "vizwiz.org/tasks-and-datasets/vqa"),
        ("vizwiz", "vizwiz/val", "vizwiz.org/tasks-and-datasets/vqa"),
    ],
)
def test_data_check_names_the_missing_file_and_its_source(data, tmp_path, monkeypatch, capsys, task, missing, source):
    from mmgpt_eval.datapaths import check
    from mmgpt_eval.taskregistry import discover

    monkeypatch.chdir(tmp_path)  # a short relative root keeps the table's paths on one line
    shutil.copytree(data["root"] / task, tmp_path / "d" / task)
    assert main(["data", "check", "--tasks", task, "--data-root", "d"]) == 0
    assert "all required files present" in capsys.readouterr().out
    target = tmp_path / "d" / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert main(["data", "check", "--tasks", task, "--data-root", "d"]) == 2
    out = capsys.readouterr().out
    assert "MISSING" in out and f"d/{missing}" in out and "1 required file(s) missing" in out
    rows = [r for r in check(discover()[task]({}), Path("d")) if not r["present"] and r["required"]]
    assert [r["path"] for r in rows] == [f"d/{missing}"] and source in rows[0]["source"]
    assert source.split("/")[0] in out


def test_train_files_are_optional(tmp_path, capsys):
    from mmgpt_eval.datapaths import check
    from mmgpt_eval.taskregistry import discover

    make_vizwiz(tmp_path)
    make_textvqa(tmp_path)
    (tmp_path / "vizwiz" / "train.json").unlink()
    (tmp_path / "textvqa" / "TextVQA_0.5.1_train.json").unlink()
    assert main(["data", "check", "--tasks", "vizwiz,textvqa", "--data-root", str(tmp_path)]) == 0
    assert "all required files present" in capsys.readouterr().out
    tasks = discover()
    absent = [
        (r["option"], r["required"])
        for name in ("vizwiz", "textvqa")
        for r in check(tasks[name]({}), tmp_path)
        if not r["present"]
    ]
    assert absent == [("vizwiz_train_annotations", False), ("textvqa_train_json", False)]


# ------------------------------------------------------------------------------------------ bad inputs
@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Broken copies of the fixture files, each with one defect."""
    root = tmp_path_factory.mktemp("bad")
    d = make_suite_data_root(root / "data")
    val = json.loads(d["textvqa"]["val_json"].read_text())
    for e in val["data"]:
        e.pop("answers")
    (root / "textvqa_test.json").write_text(json.dumps(val))
    val = json.loads(d["textvqa"]["val_json"].read_text())
    val["data"].append(dict(val["data"][0]))
    (root / "textvqa_dup.json").write_text(json.dumps(val))
    val = json.loads(d["textvqa"]["val_json"].read_text())
    val["data"][1]["image_id"] = "ffffffffffffffff"
    (root / "textvqa_noimage.json").write_text(json.dumps(val))
    val = json.loads(d["textvqa"]["val_json"].read_text())
    val["data"][0]["image_id"] = "../../etc/passwd"
    (root / "textvqa_escape.json").write_text(json.dumps(val))
    viz = json.loads(d["vizwiz"]["annotations"].read_text())
    (root / "vizwiz_dup.json").write_text(json.dumps(viz + viz[:1]))
    (root / "vizwiz_test.json").write_text(json.dumps([{k: v for k, v in e.items() if k != "answers"} for e in viz]))
    viz[2]["image"] = "VizWiz_val_00000099.jpg"
    (root / "vizwiz_noimage.json").write_text(json.dumps(viz))
    (root / "vizwiz_dict.json").write_text(json.dumps({"annotations": viz}))
    kp = json.loads(d["flickr30k"]["karpathy_json"].read_text())
    kp["images"][1]["filename"] = "404.jpg"
    (root / "flickr_noimage.json").write_text(json.dumps(kp))
    kp["images"][1]["filename"] = "/etc/hosts"
    (root / "flickr_absolute.json").write_text(json.dumps(kp))
    return root, d


def _bad_cases(root: Path, d: dict) -> dict[str, tuple[list[str], list[str]]]:
    t, v, f = d["textvqa"], d["vizwiz"], d["flickr30k"]
    tv = ["--tasks", "textvqa", "--textvqa-images", str(t["images"])]
    vz = ["--tasks", "vizwiz", "--vizwiz-images", str(v["images"])]
    fk = ["--tasks", "flickr30k", "--flickr30k-images", str(f["images"])]
    return {
        "textvqa-both-forms": (
            tv
            + [
                "--textvqa-val-json",
                str(t["val_json"]),
                "--textvqa-questions",
                str(t["questions"]),
                "--textvqa-annotations",
                str(t["annotations"]),
            ],
            ["--textvqa-val-json", "not both"],
        ),
        "textvqa-questions-only": (
            tv + ["--textvqa-questions", str(t["questions"])],
            ["--textvqa-annotations", "pair"],
        ),
        "textvqa-annotations-only-with-root": (
            ["--tasks", "textvqa", "--data-root", str(d["root"]), "--textvqa-annotations", str(t["annotations"])],
            ["--textvqa-questions", "pair"],
        ),
        "textvqa-nothing": (
            ["--tasks", "textvqa", "--data-root", str(root / "empty")],
            [str(root / "empty" / "textvqa" / "TextVQA_0.5.1_val.json"), "not found", "data check"],
        ),
        "textvqa-test-split": (
            tv + ["--textvqa-val-json", str(root / "textvqa_test.json")],
            ["textvqa_test.json", "no 'answers'", "test split"],
        ),
        "textvqa-duplicate-id": (
            tv + ["--textvqa-val-json", str(root / "textvqa_dup.json")],
            ["textvqa_dup.json", "duplicate question_id 34602"],
        ),
        "textvqa-missing-image": (
            tv + ["--textvqa-val-json", str(root / "textvqa_noimage.json")],
            ["ffffffffffffffff.jpg", "question_id 34603"],
        ),
        "textvqa-image-outside": (
            tv + ["--textvqa-val-json", str(root / "textvqa_escape.json")],
            ["textvqa_escape.json", "leaves the folder"],
        ),
        "textvqa-fewshot-without-train": (
            tv + ["--textvqa-val-json", str(t["val_json"]), "--template", "of-vqa", "--num-fewshot", "2"],
            ["--textvqa-train-json"],
        ),
        "vizwiz-duplicate-image": (
            vz + ["--vizwiz-annotations", str(root / "vizwiz_dup.json")],
            ["vizwiz_dup.json", "share the image", "VizWiz_val_00000000.jpg"],
        ),
        "vizwiz-test-split": (
            vz + ["--vizwiz-annotations", str(root / "vizwiz_test.json")],
            ["vizwiz_test.json", "no 'answers'"],
        ),
        "vizwiz-missing-image": (
            vz + ["--vizwiz-annotations", str(root / "vizwiz_noimage.json")],
            ["VizWiz_val_00000099.jpg", "entry 2"],
        ),
        "vizwiz-not-a-list": (
            vz + ["--vizwiz-annotations", str(root / "vizwiz_dict.json")],
            ["vizwiz_dict.json", "a list"],
        ),
        "vizwiz-bad-normalization": (
            vz + ["--vizwiz-annotations", str(v["annotations"]), "--vqa-normalization", "loose"],
            ["--vqa-normalization", "loose"],
        ),
        "vizwiz-fewshot-without-train": (
            vz + ["--vizwiz-annotations", str(v["annotations"]), "--template", "of-vqa", "--num-fewshot", "2"],
            ["--vizwiz-train-annotations"],
        ),
        "flickr30k-missing-image": (
            fk + ["--flickr30k-karpathy-json", str(root / "flickr_noimage.json")],
            ["404.jpg", "not found"],
        ),
        "flickr30k-absolute-image": (
            fk + ["--flickr30k-karpathy-json", str(root / "flickr_absolute.json")],
            ["flickr_absolute.json", "/etc/hosts", "absolute"],
        ),
        "flickr30k-no-such-split": (
            fk + ["--flickr30k-karpathy-json", str(f["karpathy_json"]), "--flickr30k-split", "testing"],
            ["no images in split 'testing'"],
        ),
        "flickr30k-wrong-template": (
            fk + ["--flickr30k-karpathy-json", str(f["karpathy_json"]), "--template", "of-vqa"],
            ["of-vqa", "of-caption"],
        ),
    }


BAD_CASES = [
    "textvqa-both-forms",
    "textvqa-questions-only",
    "textvqa-annotations-only-with-root",
    "textvqa-nothing",
    "textvqa-test-split",
    "textvqa-duplicate-id",
    "textvqa-missing-image",
    "textvqa-image-outside",
    "textvqa-fewshot-without-train",
    "vizwiz-duplicate-image",
    "vizwiz-test-split",
    "vizwiz-missing-image",
    "vizwiz-not-a-list",
    "vizwiz-bad-normalization",
    "vizwiz-fewshot-without-train",
    "flickr30k-missing-image",
    "flickr30k-absolute-image",
    "flickr30k-no-such-split",
    "flickr30k-wrong-template",
]


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input_fails_before_the_model_loads(name, bad, tmp_path, capsys, no_load):
    if name.startswith("flickr30k") and name != "flickr30k-wrong-template" and shutil.which("java") is None:
        pytest.skip("flickr30k checks for Java before it reads its data")
    root, d = bad
    argv, words = _bad_cases(root, d)[name]
    capsys.readouterr()
    rc = main(["-q", "run", "--model", "tiny", "--no-progress", "--output-dir", str(tmp_path / "out"), *argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in out + err, err
    assert len(lines) == 1 and lines[0].startswith("mmgpt-eval: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out" / "results.json").exists()


def test_bad_case_list_is_complete(bad):
    assert sorted(BAD_CASES) == sorted(_bad_cases(*bad))


# ------------------------------------------------------------------------------------------ scoring semantics
def test_vizwiz_official_scoring_is_the_vizwiz_evaluator():
    """The VizWiz evaluator normalises the prediction always and the answers never; OpenFlamingo's
    normalises both; GT-Vision-Lab's vqaEval.py (vqav2's official mode) neither when all answers agree."""
    from mmgpt_eval.metrics.vqa import vizwiz_accuracy, vqa_accuracy

    same = ["unanswerable"] * 10
    assert vizwiz_accuracy("Unanswerable.", same) == 1.0
    assert vqa_accuracy("Unanswerable.", same, "official") == 0.0
    memoir = ["dog years: memoir"] * 4 + ["dog years"] * 6
    assert vizwiz_accuracy("dog years: memoir", memoir) == 1.0  # ":" is not in the VQA punctuation list
    assert vizwiz_accuracy("Dog Years", memoir) == 1.0
    with_period = ["a dog."] * 4 + ["cat"] * 6  # answers are compared as written: "a dog." never matches
    assert vizwiz_accuracy("a dog.", with_period) == 0.0
    assert vqa_accuracy("a dog.", with_period, "openflamingo") == 1.0
    for pred in ("cat", "Two", "no", "dog"):
        answers = ["cat"] * 2 + ["2"] * 3 + ["no"] * 4 + ["dog"]
        assert vizwiz_accuracy(pred, answers) == pytest.approx(plain_vqa_accuracy(normalize_official(pred), answers))


# ------------------------------------------------------------------------------------------ world size 2
@pytest.mark.slow
def test_torchrun_two_processes_equal_one(data, flag_run, tmp_path):
    """torchrun (gloo, CPU) with the data root: the same per-sample predictions and metrics as the one-process
    run with flags."""
    out = tmp_path / "ws2"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mmgpt_eval",
        "-q",
        "run",
        *MODEL,
        "--tasks",
        ",".join(RUN_TASKS),
        "--no-progress",
        "--no-report",
        "--data-root",
        str(data["root"]),
        "--output-dir",
        str(out),
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ws1, ws2 = RunResults.load(flag_run), RunResults.load(out)
    assert json.loads((out / "results.json").read_text())["provenance"]["world_size"] == 2
    assert not list((out / "samples").glob("*.shard-*"))
    for task in RUN_TASKS:
        assert ws2.tasks[task].metrics == ws1.tasks[task].metrics, task
        assert ws2.tasks[task].breakdown == ws1.tasks[task].breakdown, task
        a, b = _records(flag_run, task), _records(out, task)
        assert list(a) == list(b)  # same ids, same order, none duplicated
        for sid in a:
            for k in ("prompt_sha256", "raw", "prediction", "metrics"):
                assert a[sid][k] == b[sid][k], (task, sid, k)
