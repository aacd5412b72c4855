"""``mmgpt-eval bench --openflamingo`` (mmgpt_eval_dev/bench_openflamingo.py): the paths it times give identical
predictions, its JSON carries the headline keys, and the series benchmark fails when metrics differ.
Correctness only, tiny sizes (no timings are asserted)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import mmgpt_eval
from mmgpt_eval_dev import bench_openflamingo as B
from mmgpt_eval.cli import main

ROOT = Path(__file__).resolve().parents[1]
HAS_JAVA = shutil.which("java") is not None
KEYS = (
    "ratio_vs_openflamingo_eval",
    "ratio_vs_openflamingo_eval_matched_batch",
    "ratio_vs_per_sample_loop",
    "overhead_vs_bare_generate",
    "outputs_identical",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_of_data")
    return {
        "vqa": B.write_easyvqa_vqav2(root, test_images=2, train_images=3),
        "caption": B.write_easyvqa_captions(root, test_images=5, train_images=4),
    }


def test_vqav2_files_are_official_format(data):
    bd = data["vqa"]
    q = json.loads(Path(bd.data["test_questions_json_path"]).read_text())
    a = json.loads(Path(bd.data["test_annotations_json_path"]).read_text())
    for key in ("info", "license", "data_type", "data_subtype"):
        assert key in q and key in a
    assert len(q["questions"]) == len(a["annotations"]) == bd.n_test > 2
    assert [x["question_id"] for x in q["questions"]] == [x["question_id"] for x in a["annotations"]]
    img = Path(bd.data["test_image_dir_path"])
    assert img.name == "val2014"
    assert (img / f"COCO_val2014_{q['questions'][0]['image_id']:012d}.jpg").exists()


@pytest.mark.parametrize("version", ["v2", "v1"])
@pytest.mark.parametrize(
    "kind,shots,beams",
    [
        ("vqa", 0, 3),
        ("vqa", 0, 1),
        ("vqa", 2, 3),
        pytest.param(
            "caption", 0, 3, marks=pytest.mark.skipif(not HAS_JAVA, reason="CIDEr needs Java (pycocoevalcap)")
        ),
    ],
)
def test_paths_give_identical_predictions(data, tmp_path, version, kind, shots, beams):
    """OpenFlamingo's own loop (batch 8), the runner (batch 8 and auto) and the per-sample loop agree on
    every prediction and on the score, under OpenFlamingo's protocol (3 beams; 0 shots and 2 shots, whose
    prompts hold three images) and greedy (its prompts, 1 beam on both sides)."""
    loaded = mmgpt_eval.load(**B.MODELS[version])
    assert loaded.model.flamingo_version == version
    w = B.Workload(data[kind], num_samples=6 if kind == "vqa" else -1, num_shots=shots, num_beams=beams)
    res = B.bench_config(loaded, w, repeats=1, warmup=False, tmp=tmp_path)
    assert res["samples"] == 6 if kind == "vqa" else 5
    assert res["outputs_identical"], res["mismatched_samples"]
    scores = {r["score"] for r in res["loops"].values()}
    assert max(scores) - min(scores) < 1e-3, res["loops"]
    prof = res["profile_auto"]
    assert prof["generate_calls"] >= 1 and prof["bare_generate_s"] <= prof["wall_s"]
    assert res["overhead_vs_bare_generate"]["median"] >= 1.0
    assert res["auto_batch_size"] == max(8, 64 // beams)


def test_profiled_runner_restores_the_model(data, tmp_path):
    loaded = mmgpt_eval.load(**B.MODELS["v2"])
    before = loaded.model.generate
    B.run_mmgpt_profiled(loaded, B.Workload(data["vqa"], num_samples=2), tmp_path / "x", 8)
    assert "generate" not in vars(loaded.model) and "encode_vision" not in vars(loaded.model)
    assert loaded.model.generate == before


def test_bench_json_has_the_headline_keys(tmp_path):
    out = tmp_path / "b.json"
    rc = main(
        [
            "-q",
            "bench",
            "--openflamingo",
            "--of-models",
            "v2",
            "--of-protocols",
            "vqa",
            "--vqa-images",
            "1",
            "--train-images",
            "3",
            "--limit",
            "4",
            "--repeats",
            "1",
            "--no-memory",
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    s = json.loads(out.read_text())
    for k in KEYS:
        assert k in s, k
    assert s["outputs_identical"] is True
    for k in KEYS[:4]:
        assert isinstance(s[k], float) and s[k] > 0
    c = s["configs"]["v2-vqa"]
    assert set(c["loops"]) == set(B.LOOPS) and c["samples"] == 4
    assert s["headline_config"] == "v2-vqa" and c["settings"]["num_beams"] == 3
    assert set(c["verdicts"]) == {
        "ratio_vs_openflamingo_eval",
        "ratio_vs_openflamingo_eval_matched_batch",
        "ratio_vs_per_sample_loop",
        "overhead_vs_bare_generate",
    }


def test_bench_exits_nonzero_when_outputs_differ(monkeypatch, tmp_path):
    real = B.bench_config

    def broken(*a, **kw):
        res = real(*a, **kw)
        res["outputs_identical"] = False
        res["mismatched_samples"] = {"per-sample-loop": 1}
        return res

    monkeypatch.setattr(B, "bench_config", broken)
    rc = main(
        [
            "-q",
            "bench",
            "--openflamingo",
            "--of-models",
            "v2",
            "--of-protocols",
            "vqa",
            "--vqa-images",
            "1",
            "--train-images",
            "3",
            "--limit",
            "2",
            "--repeats",
            "1",
            "--no-memory",
            "--output",
            str(tmp_path / "b.json"),
        ]
    )
    assert rc == 1
    assert json.loads((tmp_path / "b.json").read_text())["outputs_identical"] is False


def _series_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import series_speed
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return series_speed


def test_series_benchmark_fails_when_metrics_differ(monkeypatch, tmp_path):
    S = _series_module()
    for folder, acc in (("series0", 50.0), ("sep0", 50.0)):
        for ck in ("checkpoint_100", "checkpoint_200"):
            d = tmp_path / folder / ck
            d.mkdir(parents=True)
            a = acc + (1.0 if (folder, ck) == ("sep0", "checkpoint_200") else 0.0)
            (d / "results.json").write_text(json.dumps({"tasks": {"easyvqa": {"metrics": {"accuracy": a}}}}))
    same, diff = S.metrics_identical(tmp_path / "series0", tmp_path / "sep0", ["checkpoint_100", "checkpoint_200"])
    assert not same and diff == ["checkpoint_200/easyvqa"]
    same, diff = S.metrics_identical(tmp_path / "series0", tmp_path / "sep0", ["checkpoint_100"])
    assert same and diff == []
    base = {"metrics_identical": True, "differing": []}
    monkeypatch.setattr(S, "measure", lambda argv=None: dict(base))
    assert S.main([]) == 0
    monkeypatch.setattr(S, "measure", lambda argv=None: {"metrics_identical": False, "differing": diff or ["x/y"]})
    assert S.main([]) == 1


def test_bench_configs_by_shots_and_beams(tmp_path):
    """--num-shots and --of-beams make one configuration each (greedy for VQA only), named after them;
    the headline stays OpenFlamingo's VQA protocol (3 beams, the first shot count)."""
    out = tmp_path / "b.json"
    rc = main(
        [
            "-q",
            "bench",
            "--openflamingo",
            "--of-models",
            "v2",
            "--of-protocols",
            "vqa,caption",
            "--vqa-images",
            "1",
            "--caption-images",
            "2",
            "--train-images",
            "3",
            "--limit",
            "2",
            "--repeats",
            "1",
            "--no-memory",
            "--num-shots",
            "0,2",
            "--of-beams",
            "3,1",
            "--output",
            str(out),
        ]
        + ([] if HAS_JAVA else ["--of-protocols", "vqa"])
    )
    assert rc == 0
    s = json.loads(out.read_text())
    expected = {"v2-vqa", "v2-vqa-2shot", "v2-vqa-greedy", "v2-vqa-2shot-greedy"}
    if HAS_JAVA:
        expected |= {"v2-caption", "v2-caption-2shot"}
    assert set(s["configs"]) == expected
    assert s["headline_config"] == "v2-vqa"
    for name, c in s["configs"].items():
        assert c["settings"]["num_beams"] == (1 if name.endswith("greedy") else 3)
        assert c["settings"]["num_shots"] == (2 if "2shot" in name else 0)
        assert c["outputs_identical"], (name, c["mismatched_samples"])


def test_bench_rejects_bad_shot_lists(capsys):
    assert main(["-q", "bench", "--openflamingo", "--num-shots", "0,x"]) == 2
    assert main(["-q", "bench", "--openflamingo", "--of-beams", "0"]) == 2
    err = capsys.readouterr().err
    assert "--num-shots" in err and "Traceback" not in err


def test_plain_bench_json_has_the_headline_keys_too(tmp_path):
    """`mmgpt-eval bench --output b.json` (no mode flag): the look-alike loops' rows, then the headline
    comparison with OpenFlamingo's own loop, whose keys go to the top level."""
    out = tmp_path / "b.json"
    rc = main(
        [
            "-q",
            "bench",
            "--limit",
            "3",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--skip-per-sample",
            "--vqa-images",
            "1",
            "--train-images",
            "3",
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    s = json.loads(out.read_text())
    assert set(s["loops"]) == {"mmgpt-eval", "openflamingo-loop"}  # its own rows
    for k in KEYS:
        assert k in s, k
    assert s["outputs_identical"] is True and s["lookalike_outputs_identical"] is True
    assert s["headline_config"] == "v2-vqa" and set(s["openflamingo"]["configs"]) == {"v2-vqa"}
    assert (
        s["ratio_vs_openflamingo_eval"]
        == s["openflamingo"]["configs"]["v2-vqa"]["ratios"]["vs_openflamingo_eval"]["median"]
    )
