"""The users' own command, verbatim: mmgpt-eval run --ckpt X --tasks coco,vqa,dialog (with a data root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datasets import make_coco_dataset, make_vqa_dataset
from helpers import SETTINGS, tiny_with_random_lora
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.model.checkpoint import read_checkpoint
from mmgpt_eval.model.export import save_mmgpt_checkpoint, save_peft_adapter
from mmgpt_eval.model.resolve import choose_base

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_coco_dataset(root / "coco")
    v = make_vqa_dataset(root / "vqav2_src")
    (root / "vqav2").mkdir()
    shutil.move(str(v["questions"]), root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json")
    shutil.move(str(v["annotations"]), root / "vqav2" / "v2_mscoco_val2014_annotations.json")
    shutil.move(str(v["images"]), root / "vqav2" / "val2014")
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = tiny_with_random_lora()
    p = tmp_path_factory.mktemp("ck") / "checkpoint_3.pt"
    save_mmgpt_checkpoint(m.model, SETTINGS, p, kind="trainer", epoch=3, model_spec=m.spec.to_dict())
    return p


@pytest.mark.java
@pytest.mark.slow
def test_the_users_command(data_root, ckpt, tmp_path):
    out = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).parent / "mmgpt-eval"),
        "run",
        "--ckpt",
        str(ckpt),
        "--tasks",
        "coco,vqa,dialog",
        "--data-root",
        str(data_root),
        "--output-dir",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "base model: tiny" in log and "stores the model spec" in log
    res = json.loads((out / "results.json").read_text())
    assert set(res["tasks"]) == {"coco", "vqav2", "dialog"}
    assert res["run"]["base_model_choice"]["model"] == "tiny"
    assert res["model"]["checkpoint"]["format"] == "mmgpt-trainer"
    for task in ("coco", "vqav2", "dialog"):
        assert (out / "samples" / f"{task}.jsonl").stat().st_size > 0
    assert (out / "report.html").stat().st_size > 10_000
    assert str((out / "report.html").resolve()) in r.stdout


def test_missing_data_fails_before_the_model_loads(tmp_path, ckpt, capsys, monkeypatch):
    import mmgpt_eval.api as api

    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("model loaded before the data check"))
    rc = main(
        [
            "run",
            "--ckpt",
            str(ckpt),
            "--tasks",
            "coco,vqa,dialog",
            "--data-root",
            str(tmp_path / "empty"),
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "empty") in err and "not found" in err


def test_data_check(data_root, tmp_path, capsys):
    assert main(["data", "check", "--tasks", "coco,vqa", "--data-root", str(data_root)]) == 0
    assert "all required files present" in capsys.readouterr().out
    assert main(["data", "check", "--tasks", "vqa", "--data-root", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "MISSING" in out and "visualqa.org" in out


def test_data_root_from_environment(data_root, monkeypatch):
    from mmgpt_eval.datapaths import data_root as resolve_root

    monkeypatch.setenv("MMGPT_EVAL_DATA", str(data_root))
    assert resolve_root(None) == data_root
    monkeypatch.delenv("MMGPT_EVAL_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert resolve_root(None) == Path("/x/cache/mmgpt-eval/data")


def test_run_config_file(data_root, ckpt, tmp_path):
    cfg = tmp_path / "ci.toml"
    cfg.write_text(
        f'ckpt = "{ckpt}"\ntasks = ["vqa"]\ndata_root = "{data_root}"\nlimit = 3\n'
        f'output_dir = "out"\nno_progress = true\nno_report = true\n[vqav2]\n'
    )
    assert main(["-q", "run", "--config", str(cfg)]) == 0
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["tasks"]["vqav2"]["n_samples"] == 3
    # flags on the command line override the file
    assert main(["-q", "run", "--config", str(cfg), "--limit", "2", "--output-dir", str(tmp_path / "o2")]) == 0
    assert json.loads((tmp_path / "o2" / "results.json").read_text())["tasks"]["vqav2"]["n_samples"] == 2
    cfg.write_text('tasks = "vqa"\nbogus = 1\n')
    assert main(["run", "--config", str(cfg)]) == 2


def test_base_model_choice(tmp_path):
    m = tiny_with_random_lora()
    # an mmgpt-eval PEFT folder stores its spec
    d = save_peft_adapter(m.model, SETTINGS, tmp_path / "a", model_spec=m.spec.to_dict())
    assert choose_base(read_checkpoint(d)).spec.name == "tiny"
    # a MultiModal-GPT trainer file without a stored spec: the paper's base
    p = save_mmgpt_checkpoint(m.model, SETTINGS, tmp_path / "checkpoint_0.pt", kind="trainer")
    c = choose_base(read_checkpoint(p))
    assert c.spec.name == "mmgpt-9b-v0" and "MultiModal-GPT" in c.reason
    # a PEFT folder naming a preset as its base
    d2 = save_peft_adapter(m.model, SETTINGS, tmp_path / "b", base_name="tiny")
    (d2 / "mmgpt_eval.json").unlink()
    assert choose_base(read_checkpoint(d2)).spec.name == "tiny"
    # ambiguous: a PEFT folder for some other base
    cfg = json.loads((d2 / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "some-org/some-llm"
    (d2 / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="pass --model"):
        choose_base(read_checkpoint(d2))
