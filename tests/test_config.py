"""EvalConfig: one settings object whose field metadata generates run's flags, run-config keys, results'
run info, the fingerprint and the baseline checks -- and changes nothing that older runs recorded."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

import mmgpt_eval.api
from mmgpt_eval.cli import build_parser, main
from mmgpt_eval.config import EvalConfig, LoadOptions, flags, meta, read_run_config, settings
from mmgpt_eval.errors import UserError
from mmgpt_eval.generation_settings import GenerationSettings
from mmgpt_eval.runner import PreparedTask, fingerprint, run_info
from mmgpt_eval.taskapi import Task
from mmgpt_eval.templates import get_template


# ------------------------------------------------------------------------------ pinned to 0ef36bc
class _Pin(Task):
    name = "pin"
    version = "3"
    templates = ("mmgpt", "of-vqa")


class _PinDialog(_Pin):
    name = "pindialog"
    multi_round = True


IDENTITY = {
    "spec": {"x": 1},
    "checkpoint_sha256": "ab",
    "openflamingo_checkpoint_sha256": None,
    "device_type": "cpu",
    "dtype": "torch.float32",
}

# computed with the runner of commit 0ef36bc (RunConfig + runner.fingerprint) on the same tasks and
# settings: old run folders must resume, so these may never change
PINNED_FINGERPRINTS = {
    "default": (_Pin, "mmgpt", dict(seed=0), "872983196d58137510ea499ac63a689a6f7c88685be1f87530351f77f8dfb07c"),
    "of4rices": (
        _Pin,
        "of-vqa",
        dict(
            num_fewshot=4,
            fewshot_selection="rices",
            rices_encoder="openclip:ViT-L-14:openai",
            protocol="openflamingo",
            seed=42,
            of_num_samples=100,
            of_query_set_size=2048,
        ),
        "c0032520f8efdbfc6a98362e8c2dd876a4d9c28626ff6fdb0d54e2c2c9bbf73a",
    ),
    # of_query_set_size unset: OpenFlamingo's default 2048, as before
    "of0": (
        _Pin,
        "of-vqa",
        dict(protocol="openflamingo"),
        "a5747a6fe20c7c6f7439a5c5b3fee4a8ac5ec4eb8fbba241de2d3bf84e72bbdb",
    ),
    "zero_none_dialog": (
        _PinDialog,
        "of-vqa",
        dict(fewshot_zero_mode="none", history_mode="teacher", seed=3, limit=5),
        "80663bed4ba019b7edf3472aa95953f85c14d17c06bb7afdb5957c0bfe96bc72",
    ),
    "ours2shot": (
        _Pin,
        "of-vqa",
        dict(num_fewshot=2, seed=7, batch_size=0, num_beams=3),
        "fc8ce78d076320ef6811550374f94eaf01c87e156505b024afdcf878f1698c8b",
    ),
}


@pytest.mark.parametrize("case", sorted(PINNED_FINGERPRINTS))
def test_fingerprint_is_byte_identical_to_before(case):
    cls, template, kw, expected = PINNED_FINGERPRINTS[case]
    cfg = EvalConfig(output_dir=Path("o"), **kw)
    seed = 42 if cfg.protocol == "openflamingo" and cfg.seed is None else cfg.seed
    pt = PreparedTask(cls({}), [], 10, get_template(template), GenerationSettings(max_new_tokens=7, seed=seed))
    assert fingerprint(pt, cfg, IDENTITY) == expected
    # a fingerprinted setting changes it
    other = dataclasses.replace(cfg, num_fewshot=cfg.num_fewshot + 1)
    assert fingerprint(pt, other, IDENTITY) != expected


def test_run_info_is_byte_identical_to_before():
    """results.json's run info, key order included (json.dumps of 0ef36bc's run dict)."""
    a = EvalConfig(output_dir=Path("out"), argv=("run",), label="L")
    assert json.dumps(run_info(a, 1.23456, {"base_model_choice": {"a": 1}})) == (
        '{"argv": ["run"], "output_dir": "out", "seed": 0, "batch_size": 8, "limit": null, "num_fewshot": 0, '
        '"fewshot_zero_mode": "text-demos", "fewshot_selection": "random", "rices_encoder": "model", "template": null, '
        '"history_mode": "self", "generation_overrides": {}, "share_prefix": true, "model_load_s": 1.235, '
        '"protocol": "mmgpt-eval", "label": "L", "base_model_choice": {"a": 1}}'
    )
    b = EvalConfig(
        output_dir=Path("o2"),
        protocol="openflamingo",
        seed=42,
        of_num_samples=100,
        num_fewshot=4,
        fewshot_selection="rices",
        max_new_tokens=5,
        use_cache=False,
        share_prefix=False,
        batch_size=0,
        template="of-vqa",
    )
    assert json.dumps(run_info(b, 1.23456)) == (
        '{"argv": [], "output_dir": "o2", "seed": 42, "batch_size": 0, "limit": null, "num_fewshot": 4, '
        '"fewshot_zero_mode": "text-demos", "fewshot_selection": "rices", "rices_encoder": "model", '
        '"template": "of-vqa", "history_mode": "self", "generation_overrides": {"max_new_tokens": 5, '
        '"use_cache": false}, "share_prefix": false, "model_load_s": 1.235, "protocol": "openflamingo", '
        '"of_num_samples": 100, "of_query_set_size": 2048}'
    )


# ------------------------------------------------------------------------------ generated from the fields
def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser(["run"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _sample_text(fl) -> str | None:
    """A value the flag accepts that differs from the field's default (tried in order)."""
    choices = fl.choice_list()
    if choices:
        return str(choices[-1])
    for text in ("3", "0.5", "cpu", "x"):
        try:
            if fl.type is None or fl.type(text) is not None:
                return text
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            continue
    return None


FLAGLESS = {"argv": "the command line itself", "task_options": "the tasks' own flags and [task] tables"}


def test_every_field_is_a_flag_and_a_config_key(tmp_path):
    run = _run_parser()
    options = {o for a in run._actions for o in a.option_strings}
    fields = [f.name for f in settings()]
    assert len(fields) >= 28
    for f in settings():
        fl = f.metadata["setting"].flag
        if fl is None:
            assert f.name in FLAGLESS, f"{f.name} has no flag"
            continue
        assert fl.name in options, f"{f.name}: {fl.name} is not a flag of run"
        text = str(tmp_path) if fl.metavar == "DIR" else _sample_text(fl)  # folders must exist
        assert text is not None, f.name
        # the flag and the config key give the field the same value
        if fl.kind in ("switch", "negated"):
            argv, toml = [fl.name], f"{fl.dest} = true\n"
        elif fl.kind == "append":
            argv, toml = [fl.name, text], f"{fl.dest} = [{json.dumps(text)}]\n"
        else:
            argv, toml = [fl.name, text], f"{fl.dest} = {json.dumps(text)}\n"
        from_flag = EvalConfig.from_cli(argv)
        assert getattr(from_flag, f.name) != f.default, (f.name, argv)
        cfg_file = tmp_path / f"{f.name}.toml"
        cfg_file.write_text(toml)
        from_file = EvalConfig.from_toml(cfg_file)
        value = getattr(from_file, f.name)
        if fl.path:  # relative to the config file's folder
            expected = getattr(from_flag, f.name)
            assert value in (expected, str(tmp_path / str(expected))), (f.name, value)
        else:
            assert value == getattr(from_flag, f.name), (f.name, value)
    # the flagless ones: task option flags and [task] tables reach task_options
    (tmp_path / "t.toml").write_text('[easyvqa]\nsplit = "train"\n')
    assert EvalConfig.from_toml(tmp_path / "t.toml").task_options == {"easyvqa": {"split": "train"}}
    assert EvalConfig.from_cli(["--easyvqa-split", "train"]).task_options == {"easyvqa_split": "train"}
    assert EvalConfig.from_cli(["--limit", "3"]).argv == ("--limit", "3")


def test_every_field_is_recorded_in_results(tmp_path):
    """A real run: each field's declared record location holds it in results.json."""
    out = tmp_path / "a"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    argv = [
        "-q",
        "run",
        "--tasks",
        "easyvqa",
        "--limit",
        "2",
        "--output-dir",
        str(out),
        "--label",
        "A",
        "--trials",
        "2",
        "--no-report",
        "--no-progress",
        "--include-path",
        str(plugins),
        "--max-new-tokens",
        "3",
        "--no-cache",
        "--trust-checkpoint",
        "--device",
        "cpu",
        "--overwrite",
    ]
    have_mlflow = importlib.util.find_spec("mlflow") is not None
    if have_mlflow:
        argv += ["--log-to", f"mlflow:file:{tmp_path / 'mlruns'}"]
    assert main(argv) == 0
    a = json.loads((out / "results.json").read_text())
    b_out = tmp_path / "b"
    assert (
        main(
            [
                "-q",
                "run",
                "--tasks",
                "easyvqa",
                "--limit",
                "2",
                "--output-dir",
                str(b_out),
                "--no-progress",
                "--baseline",
                str(out / "trials" / "seed-0"),
                "--intersect",
                "--no-report",
                "--max-new-tokens",
                "3",
                "--no-cache",
            ]
        )
        == 0
    )
    b = json.loads((b_out / "results.json").read_text())
    for f in settings():
        s = f.metadata["setting"]
        where = s.recorded_at
        assert where, f"{f.name} is recorded nowhere"
        if where == "run.argv" and s.flag is not None:  # recorded as the command line that set it
            if f.name == "log_to" and not have_mlflow:
                continue
            assert s.flag.name in a["run"]["argv"], (f.name, a["run"]["argv"])
        elif s.owner:  # a protocol's own setting: that protocol records it
            from mmgpt_eval.protocols import get

            assert where.split(".", 1)[1] in get(s.owner).run_info(EvalConfig(protocol=s.owner)), f.name
        elif where.startswith("run."):
            key = where.split(".", 1)[1]
            assert key in a["run"], (f.name, key)
        elif where == "model":
            assert a["model"], f.name
        elif where in ("tasks", "tasks.options"):
            assert "options" in a["tasks"]["easyvqa"], f.name
        elif where == "baseline":
            assert b["baseline"]["source"] and b["baseline"]["comparisons"], f.name
        else:
            raise AssertionError(f"{f.name}: unknown record location {where!r}")
    assert a["run"]["generation_overrides"] == {"max_new_tokens": 3, "use_cache": False}
    assert a["run"]["label"] == "A" and a["run"]["trials"]["seeds"] == [0, 1]


# ------------------------------------------------------------------------------ behaviour
def test_evaluate_kwargs_build_the_same_config():
    cfg = EvalConfig.from_kwargs(
        model="tiny",
        tasks=["easyvqa"],
        generation={"num_beams": 2, "use_cache": False},
        load_options=LoadOptions(device="cpu", allow_partial=True),
        include_paths=["p"],
        limit=None,
    )
    assert (
        cfg.model,
        cfg.tasks,
        cfg.num_beams,
        cfg.use_cache,
        cfg.device,
        cfg.allow_partial,
        cfg.include_paths,
        cfg.limit,
    ) == ("tiny", ("easyvqa",), 2, False, "cpu", True, ("p",), None)
    assert cfg.generation_overrides == {"num_beams": 2, "use_cache": False}
    assert cfg.load_options == LoadOptions(device="cpu", allow_partial=True)
    with pytest.raises(UserError, match="unknown generation override 'beams'"):
        EvalConfig.from_kwargs(generation={"beams": 2})
    with pytest.raises(TypeError):
        EvalConfig.from_kwargs(bogus=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.limit = 3  # type: ignore[misc]


def test_config_file_semantics(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ck.pt").write_text("x")
    cfg = tmp_path / "sub" / "run.toml"
    cfg.write_text(
        'ckpt = "ck.pt"\nmodel = "tiny"\noutput_dir = "out"\ndata_root = "data"\ntasks = ["a", "b"]\n'
        'limit = 3\nlog_to = "mlflow"\n[easyvqa]\nsplit = "train"\n'
    )
    c = EvalConfig.from_toml(cfg)
    assert c.ckpt == str(tmp_path / "sub" / "ck.pt") and c.model == "tiny"  # relative: only when it exists
    assert c.output_dir == str(tmp_path / "sub" / "out") and c.data_root == str(tmp_path / "sub" / "data")
    assert c.tasks == "a,b" and c.limit == 3 and c.log_to == ("mlflow",)
    assert c.task_options == {"easyvqa": {"split": "train"}}
    # flags win over the file
    c2 = EvalConfig.from_cli(["--config", str(cfg), "--limit", "all", "--easyvqa-split", "test"])
    assert c2.limit == "all" and c2.task_options["easyvqa_split"] == "test"
    cfg.write_text('vqav2_questions = "q.json"\neasyvqa_split = "train"\n')  # task options as top-level keys
    assert EvalConfig.from_toml(cfg).task_options == {"vqav2_questions": "q.json", "easyvqa_split": "train"}
    cfg.write_text('limit = "all"\n')
    assert EvalConfig.from_toml(cfg).limit == "all"
    for bad, words in (
        ("limit = 0\n", ["limit", "all"]),
        ("lmit = 3\n", ["unknown run option 'lmit'"]),
        ('no_report = "yes"\n', ["no_report", "true or false"]),
        ('protocol = "nope"\n', ["protocol", "mmgpt-eval, openflamingo"]),
    ):
        cfg.write_text(bad)
        with pytest.raises(UserError) as e:
            read_run_config(str(cfg))
        assert str(cfg) in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_limit_all(monkeypatch, capsys):
    seen = {}

    def fake(cfg, extra):
        seen["cfg"] = cfg
        return None

    monkeypatch.setattr(mmgpt_eval.api, "_evaluate_in_folder", fake)
    assert main(["-q", "run", "--tasks", "easyvqa", "--limit", "all", "--no-report"]) == 0
    assert seen["cfg"].limit is None  # every sample
    mmgpt_eval.api.evaluate(tasks="easyvqa", limit="all", output_dir="x")
    assert seen["cfg"].limit is None
    # the embedded default's 200 applies only when no limit is given at all
    mmgpt_eval.api.evaluate(limit="all", output_dir="x")
    assert seen["cfg"].limit is None
    assert main(["run", "--limit", "0"]) == 2
    err = capsys.readouterr().err
    assert "--limit" in err and "'all'" in err


def test_metadata_is_consistent():
    dests = [fl.dest for fl in flags()]
    assert len(dests) == len(set(dests))
    assert meta("protocol").baseline == "run.protocol" and meta("num_fewshot").fingerprint == "always"
    for f in settings():
        s = f.metadata["setting"]
        if s.owner:
            from mmgpt_eval.protocols import names

            assert s.owner in names(), f.name
