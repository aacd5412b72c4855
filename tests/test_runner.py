"""The runner end to end on the tiny preset: results schema, per-sample logs, batch-size invariance,
resume after SIGKILL, cache invalidation, fixed subsets, plugins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmgpt_eval.cli import main
from mmgpt_eval.records import read_samples
from mmgpt_eval.results import RunResults

ROOT = Path(__file__).resolve().parents[1]


def _run(out, *extra, limit=24):
    return main(
        [
            "-q",
            "run",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--tasks",
            "easyvqa",
            "--limit",
            str(limit),
            "--output-dir",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def _strip_timing(d):
    d = json.loads(json.dumps(d))
    d.pop("created", None)
    d.pop("provenance", None)
    d["run"].pop("argv", None)
    d["run"].pop("output_dir", None)
    d["run"].pop("model_load_s", None)
    d["run"].pop("batch_size", None)
    d["model"].pop("load_reports", None)
    for t in d["tasks"].values():
        t.pop("timing")
        t["notes"] = [n for n in t["notes"] if not n.startswith("resumed")]
    return d


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert _run(out, "--batch-size", "8", limit=40) == 0
    return out


def test_results_and_samples(reference_run):
    r = RunResults.load(reference_run)
    d = json.loads((reference_run / "results.json").read_text())
    assert d["schema"] == "mmgpt-eval/results" and d["schema_version"] == 2
    t = r.tasks["easyvqa"]
    assert t.n_samples == 40 and t.n_available == 9673 and "sha256" in t.subset
    assert set(t.metrics) == {"accuracy"} and 0 <= t.metrics["accuracy"] <= 100
    assert t.metric_info["accuracy"]["kind"] == "binary"
    assert t.template["name"] == "mmgpt" and len(t.template["sha256"]) == 64
    assert t.timing["samples_generated"] == 40 and t.timing["tokens_per_s"] > 0
    prov = d["provenance"]
    assert prov["versions"]["torch"] and prov["versions"]["transformers"] and "peak_memory" in prov
    assert "hash" in prov["git"] and prov["wall_time_s"] > 0
    assert d["model"]["model_spec"]["flamingo_version"] == "v2"
    recs = r.samples("easyvqa")
    assert len(recs) == 40 and len({x["id"] for x in recs}) == 40
    rec = recs[0]
    assert {"id", "prompt_sha256", "template_sha256", "raw", "prediction", "references", "metrics"} <= set(rec)
    assert rec["metrics"]["exact"] in (0, 1)
    header = json.loads((reference_run / "samples" / "easyvqa.jsonl").read_text().splitlines()[0])
    assert header["mmgpt-eval/samples"]["fingerprint"] == t.fingerprint


def test_batch_size_invariance(reference_run, tmp_path):
    assert _run(tmp_path, "--batch-size", "1", limit=40) == 0
    a = {x["id"]: x for x in RunResults.load(reference_run).samples("easyvqa")}
    b = {x["id"]: x for x in RunResults.load(tmp_path).samples("easyvqa")}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["raw"] == b[k]["raw"] and a[k]["metrics"] == b[k]["metrics"]
    assert _strip_timing(RunResults.load(reference_run).to_dict()) == _strip_timing(RunResults.load(tmp_path).to_dict())


def test_resume_after_sigkill(reference_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "mmgpt_eval",
        "-q",
        "run",
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--tasks",
        "easyvqa",
        "--limit",
        "40",
        "--output-dir",
        str(out),
        "--batch-size",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = out / "samples" / "easyvqa.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if samples.exists() and len(samples.read_bytes().splitlines()) >= 6:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(read_samples(samples))
    assert 5 <= n_before < 40
    assert not (out / "results.json").exists()
    assert subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True).returncode == 0
    recs = read_samples(samples)
    assert len(recs) == 40 and len({r["id"] for r in recs}) == 40  # none lost, none duplicated
    r = RunResults.load(out)
    assert r.tasks["easyvqa"].timing["samples_resumed"] >= n_before - 1  # a line cut by the kill is redone
    assert _strip_timing(r.to_dict()) == _strip_timing(RunResults.load(reference_run).to_dict())
    a = {x["id"]: x["raw"] for x in RunResults.load(reference_run).samples("easyvqa")}
    assert {x["id"]: x["raw"] for x in recs} == a


def test_changed_settings_invalidate_the_cache(tmp_path):
    assert _run(tmp_path, limit=8) == 0
    assert _run(tmp_path, limit=8) == 0
    assert RunResults.load(tmp_path).tasks["easyvqa"].timing["samples_resumed"] == 8
    assert _run(tmp_path, "--max-new-tokens", "3", limit=8) == 2  # refused: the folder's run has other settings
    assert _run(tmp_path, "--max-new-tokens", "3", "--overwrite", limit=8) == 0
    t = RunResults.load(tmp_path).tasks["easyvqa"]
    assert t.timing["samples_resumed"] == 0 and t.generation["max_new_tokens"] == 3
    assert list((tmp_path / "samples").glob("easyvqa.jsonl.stale-*"))
    assert all(len(r["raw"]) >= 0 for r in read_samples(tmp_path / "samples" / "easyvqa.jsonl"))


def test_limit_subset_is_fixed_and_nested(tmp_path):
    from mmgpt_eval.taskapi import fixed_subset
    from mmgpt_eval_tasks.easyvqa import EasyVQA

    samples = EasyVQA().load()
    small = {s.id for s in fixed_subset("easyvqa", samples, 10)}
    big = {s.id for s in fixed_subset("easyvqa", samples, 50)}
    assert len(small) == 10 and small <= big
    assert small == {s.id for s in fixed_subset("easyvqa", list(reversed(samples)), 10)}


def test_unknown_task_suggests(tmp_path, capsys):
    rc = main(["run", "--tasks", "easyvq", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown task 'easyvq'; did you mean easyvqa" in err


def test_fewshot_demos_depend_on_item_and_seed_only():
    from mmgpt_eval.taskapi import RunContext
    from mmgpt_eval.templates import get_template
    from mmgpt_eval_tasks.easyvqa import EasyVQA

    t = EasyVQA()
    s = t.load()[:3]
    ctx = RunContext(seed=5, num_fewshot=2, template=get_template("of-vqa"))
    a = [t.requests(x, 0, {}, ctx)[0].prompt for x in s]
    b = [t.requests(x, 0, {}, ctx)[0].prompt for x in reversed(s)][::-1]
    assert a == b and a[0].count("<image>") == 3 and len(t.requests(s[0], 0, {}, ctx)[0].images) == 3
    zero = t.requests(s[0], 0, {}, RunContext(seed=5, num_fewshot=0, template=get_template("of-vqa")))[0]
    assert zero.prompt.count("<image>") == 1 and zero.prompt.count("Short answer:") == 3  # 2 text-only demos
    none = t.requests(s[0], 0, {}, RunContext(seed=5, fewshot_zero_mode="none", template=get_template("of-vqa")))[0]
    assert none.prompt.count("Short answer:") == 1


def test_include_path_plugin(tmp_path, capsys):
    plug = tmp_path / "plugins"
    plug.mkdir()
    (plug / "mytask.py").write_text("""
from mmgpt_eval.taskapi import Task, Sample, MetricInfo, Option
class Echo(Task):
    name = "echo"
    description = "language-only echo test task"
    templates = ("mmgpt-text",)
    default_template = "mmgpt-text"
    primary_metric = "nonempty"
    OPTIONS = (Option("n", "how many", type=int, default=3),)
    def load(self):
        return [Sample(id=str(i), images=[], fields={"question": f"Say {i}."}, references=[str(i)])
                for i in range(self.option("n"))]
    def metric_info(self):
        return {"nonempty": MetricInfo(kind="binary", scale=100.0, per_sample="nonempty")}
    def score_sample(self, sample, outputs):
        return {"nonempty": int(bool(outputs["main"].prediction))}
TASK = Echo
""")
    assert main(["tasks", "--include-path", str(plug)]) == 0
    assert "echo" in capsys.readouterr().out
    out = tmp_path / "out"
    assert (
        main(
            [
                "-q",
                "run",
                "--tasks",
                "echo",
                "--include-path",
                str(plug),
                "--echo-n",
                "4",
                "--output-dir",
                str(out),
                "--max-new-tokens",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    r = RunResults.load(out)
    assert r.tasks["echo"].n_samples == 4 and r.tasks["echo"].options == {"echo_n": 4}


def test_entry_point_plugins(monkeypatch):
    import mmgpt_eval.taskregistry as reg
    from mmgpt_eval_tasks.easyvqa import EasyVQA

    class Renamed(EasyVQA):
        name = "easyvqa-ep"

    class EP:
        name, value = "x", "pkg:Renamed"

        def load(self):
            return Renamed

    monkeypatch.setattr(reg, "entry_points", lambda group: [EP()] if group == reg.ENTRY_POINT_GROUP else [])
    assert "easyvqa-ep" in reg.discover()


def test_task_config_file(tmp_path):
    import argparse

    from mmgpt_eval.config import cli_task_options as task_options
    from mmgpt_eval.errors import UserError
    from mmgpt_eval.taskregistry import discover, normalize_options

    (tmp_path / "q.json").write_text("{}")
    cfg = tmp_path / "tasks.toml"
    cfg.write_text('[vqav2]\nquestions = "q.json"\nnormalization = "openflamingo"\n[easyvqa]\nsplit = "train"\n')
    args = argparse.Namespace(task_config=str(cfg), config=None, include_path=[], easyvqa_split=None)
    opts = normalize_options(task_options(args, {}), discover())
    assert opts == {
        "vqav2_questions": str((tmp_path / "q.json").resolve()),
        "easyvqa_split": "train",
        "vqa_normalization": "openflamingo",
    }  # a shared option by its short name
    args.easyvqa_split = "test"  # a flag wins over the file
    assert normalize_options(task_options(args, {}), discover())["easyvqa_split"] == "test"
    cfg.write_text('[vqav2]\nquestionz = "q.json"\n')
    args.easyvqa_split = None
    with pytest.raises(UserError, match="unknown option 'questionz' in \\[vqav2\\]"):
        normalize_options(task_options(args, {}), discover())


def test_in_process_run_records_its_own_command(tmp_path):
    """``main([...])`` called from Python records the command it was given, not the host process's argv."""
    argv = [
        "run",
        "--model",
        "tiny",
        "--tasks",
        "easyvqa",
        "--limit",
        "2",
        "--no-progress",
        "--no-report",
        "--output-dir",
        str(tmp_path / "o"),
    ]
    assert main(list(argv)) == 0
    run = json.loads((tmp_path / "o" / "results.json").read_text())["run"]
    assert run["argv"] == argv
