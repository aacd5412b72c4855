"""The checkpoint validator (mmgpt_eval/model/validate.py): broken adapters are refused by every command
that reads a checkpoint -- exit 2, one stderr line naming the file and the tensor or key, nothing
written, no model built or evaluated -- and --allow-suspicious-adapter accepts the deliberate cases
loudly, recorded in results.

The corpus is built from the shipped tiny adapter (a PEFT folder) and from trainer-format ``.pt`` files
holding its tensors. Every case runs in-process through ``mmgpt_eval.cli.main``; model.build.build_base
fails the test when called (a checkpoint is read before the base model is built), so the corpus builds
no model. New names (model.validate, the override flag) are imported inside the tests that use them, so
the corpus also runs on code without the validator."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from cli_checks import one_error_line
import torch
from safetensors.torch import load_file, save_file

import mmgpt_eval.model.build
import mmgpt_eval.runner
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.model.checkpoint import SHIPPED_WEIGHTS, read_checkpoint

TINY = SHIPPED_WEIGHTS / "tiny-mmgpt"
FIRST_A = "base_model.model.lang_encoder.model.layers.0.decoder_layer.self_attn.k_proj.lora_A.weight"


# ------------------------------------------------------------------------------------ the corpus
def _cfg(**changes: Any) -> Callable[[dict], None]:
    return lambda c: c.update(changes)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda c: c.pop(key)


def _dtype(dtype: torch.dtype) -> Callable[[dict], dict]:
    return lambda t: {k: v.to(dtype) for k, v in t.items()}


# PEFT folders: name -> (adapter_config.json edit, tensor edit, raw adapter_config.json text)
PEFT: dict[str, tuple[Any, Any, str | None]] = {
    "empty-weights": (None, lambda t: {}, None),
    "renamed": (None, lambda t: {k.replace(".lora_", ".lora"): v for k, v in t.items()}, None),
    "int32": (None, _dtype(torch.int32), None),
    "int64": (None, _dtype(torch.int64), None),
    "int8": (None, _dtype(torch.int8), None),
    "bool": (None, _dtype(torch.bool), None),
    "alpha-nan": (_cfg(lora_alpha=float("nan")), None, None),
    "alpha-inf": (_cfg(lora_alpha=float("inf")), None, None),
    "alpha-1e400": (
        None,
        None,
        json.dumps(json.loads((TINY / "adapter_config.json").read_text())).replace(
            '"lora_alpha": 16.0', '"lora_alpha": 1e400'
        ),
    ),
    "alpha-0": (_cfg(lora_alpha=0), None, None),
    "alpha-neg": (_cfg(lora_alpha=-1), None, None),
    "alpha-1e30": (_cfg(lora_alpha=1e30), None, None),
    "alpha-1e-30": (_cfg(lora_alpha=1e-30), None, None),
    "alpha-1e5": (_cfg(lora_alpha=1e5), None, None),
    "alpha-text": (_cfg(lora_alpha="sixteen"), None, None),
    "alpha-missing": (_drop("lora_alpha"), None, None),
    "r-0": (_cfg(r=0), None, None),
    "r-neg": (_cfg(r=-1), None, None),
    "r-fraction": (_cfg(r=16.5), None, None),
    "r-bool": (_cfg(r=True), None, None),
    "r-huge": (None, None, json.dumps({**json.loads((TINY / "adapter_config.json").read_text()), "r": 10**400})),
    "r-1e400": (
        None,
        None,
        json.dumps(json.loads((TINY / "adapter_config.json").read_text())).replace('"r": 16', '"r": 1e400'),
    ),
    "rslora-1e4": (_cfg(use_rslora=True, lora_alpha=1e4), None, None),
    "rslora-text": (_cfg(use_rslora="false"), None, None),
    "alpha-pattern-nan": (_cfg(alpha_pattern={"q_proj": float("nan")}), None, None),
    "alpha-pattern-1e9": (_cfg(alpha_pattern={"q_proj": 1e9}), None, None),
    "rank-pattern-0": (_cfg(rank_pattern={"q_proj": 0}), None, None),
    "targets-int": (_cfg(target_modules=5), None, None),
    "config-missing": (None, None, ""),
    "config-malformed": (None, None, "{not json"),
    "config-list": (None, None, "[1, 2]"),
    "config-empty": (None, None, " "),
}

# trainer-format .pt files: name -> tuning_config (None: none stored) and tensors
TRAINER: dict[str, tuple[dict | None, str]] = {
    "tc-alpha-nan.pt": ({"lora": True, "lora_r": 16, "lora_alpha": float("nan")}, "tiny"),
    "tc-r-text.pt": ({"lora": True, "lora_r": "sixteen", "lora_alpha": 16}, "tiny"),
    "tc-r-0.pt": ({"lora": True, "lora_r": 0, "lora_alpha": 16}, "tiny"),
    "tc-alpha-1e6.pt": ({"lora": True, "lora_r": 16, "lora_alpha": 1e6}, "tiny"),
    "tc-no-tensors.pt": ({"lora": True, "lora_r": 16, "lora_alpha": 16}, "empty"),
    "raw-int.pt": (None, "int"),
}

RUN = ["run", "--tasks", "easyvqa", "--no-progress", "--output-dir", "out", "--limit", "2"]
PREDICT = ["predict", "--model", "tiny-openflamingo", "--input", "cases.jsonl", "--output", "o.jsonl"]


def _argv(command: str, ckpt: str) -> list[str]:
    if command == "run":
        return RUN + ["--ckpt", ckpt]  # no --model: the base is chosen from the checkpoint
    if command == "run-model":
        return RUN + ["--model", "tiny-openflamingo", "--ckpt", ckpt]
    if command == "predict":
        return PREDICT + ["--ckpt", ckpt]
    return ["inspect", ckpt]


# (case, ckpt, words the one error line must hold); every case runs with run and inspect, some with
# predict and run --model too
EXPECTED: list[tuple[str, str, list[str]]] = [
    ("empty-weights", "empty-weights", ["adapter_model.safetensors", "no LoRA tensors", "--allow-suspicious-adapter"]),
    ("renamed", "renamed", ["adapter_model.safetensors", "no LoRA tensors", ".loraA.weight"]),
    ("int32", "int32", ["adapter_model.safetensors", FIRST_A, "int32"]),
    ("int64", "int64", ["adapter_model.safetensors", FIRST_A, "int64"]),
    ("int8", "int8", ["adapter_model.safetensors", FIRST_A, "int8"]),
    ("bool", "bool", ["adapter_model.safetensors", FIRST_A, "bool"]),
    ("alpha-nan", "alpha-nan", ["adapter_config.json", "'lora_alpha'", "finite"]),
    ("alpha-inf", "alpha-inf", ["adapter_config.json", "'lora_alpha'", "finite"]),
    ("alpha-1e400", "alpha-1e400", ["adapter_config.json", "'lora_alpha'", "finite"]),
    ("alpha-0", "alpha-0", ["adapter_config.json", "'lora_alpha'", "<= 0", "--allow-suspicious-adapter"]),
    ("alpha-neg", "alpha-neg", ["adapter_config.json", "'lora_alpha'", "<= 0"]),
    ("alpha-1e30", "alpha-1e30", ["adapter_config.json", "'lora_alpha'", "scaling", "1000"]),
    ("alpha-1e-30", "alpha-1e-30", ["adapter_config.json", "'lora_alpha'", "scaling", "0.001"]),
    ("alpha-1e5", "alpha-1e5", ["adapter_config.json", "'lora_alpha'", "scaling of 6.25e+03"]),
    ("alpha-text", "alpha-text", ["adapter_config.json", "'lora_alpha'", "sixteen"]),
    ("alpha-missing", "alpha-missing", ["adapter_config.json", "no 'lora_alpha'"]),
    ("r-0", "r-0", ["adapter_config.json", "'r'", ">= 1"]),
    ("r-neg", "r-neg", ["adapter_config.json", "'r'", ">= 1"]),
    ("r-fraction", "r-fraction", ["adapter_config.json", "'r'", "integer", "16.5"]),
    ("r-bool", "r-bool", ["adapter_config.json", "'r'", "number"]),
    ("r-huge", "r-huge", ["adapter_config.json", "'r'", "at most"]),
    ("r-1e400", "r-1e400", ["adapter_config.json", "'r'", "integer"]),
    ("rslora-1e4", "rslora-1e4", ["adapter_config.json", "'lora_alpha'", "scaling of 2.5e+03"]),
    ("rslora-text", "rslora-text", ["adapter_config.json", "'use_rslora'", "true or false"]),
    ("alpha-pattern-nan", "alpha-pattern-nan", ["adapter_config.json", "'alpha_pattern' entry 'q_proj'", "finite"]),
    ("alpha-pattern-1e9", "alpha-pattern-1e9", ["adapter_config.json", "'alpha_pattern' entry 'q_proj'", "scaling"]),
    ("rank-pattern-0", "rank-pattern-0", ["adapter_config.json", "'rank_pattern' entry 'q_proj'", ">= 1"]),
    ("targets-int", "targets-int", ["adapter_config.json", "'target_modules'"]),
    ("config-missing", "config-missing", ["config-missing", "adapter_config.json"]),
    (
        "weights-file-no-config",
        "config-missing/adapter_model.safetensors",
        ["config-missing/adapter_model.safetensors", "adapter_config.json"],
    ),
    ("config-malformed", "config-malformed", ["config-malformed/adapter_config.json", "malformed JSON"]),
    ("config-list", "config-list", ["config-list/adapter_config.json", "JSON object"]),
    ("config-empty", "config-empty", ["config-empty/adapter_config.json", "malformed JSON"]),
    ("config-directory", "config-directory", ["config-directory/adapter_config.json", "not a file"]),
    ("config-latin1", "config-latin1", ["config-latin1/adapter_config.json", "UTF-8"]),
    ("bin-int16", "bin-int16", ["adapter_model.bin", FIRST_A, "int16"]),
    ("tc-alpha-nan", "tc-alpha-nan.pt", ["tc-alpha-nan.pt", "tuning_config 'lora_alpha'", "finite"]),
    ("tc-r-text", "tc-r-text.pt", ["tc-r-text.pt", "tuning_config 'lora_r'", "sixteen"]),
    ("tc-r-0", "tc-r-0.pt", ["tc-r-0.pt", "tuning_config 'lora_r'", ">= 1"]),
    ("tc-alpha-1e6", "tc-alpha-1e6.pt", ["tc-alpha-1e6.pt", "tuning_config 'lora_alpha'", "scaling"]),
    ("tc-no-tensors", "tc-no-tensors.pt", ["tc-no-tensors.pt", "no LoRA tensors"]),
    ("raw-int", "raw-int.pt", ["raw-int.pt", FIRST_A, "int32"]),
]
# the trainer-format files store no model spec: `run` needs --model for them
NEEDS_MODEL = {c for c, ck, _ in EXPECTED if ck.endswith(".pt")}
ALSO_PREDICT = {"empty-weights", "int32", "alpha-nan", "alpha-0", "config-missing", "tc-r-text", "raw-int"}
ALSO_RUN_MODEL = {"renamed", "alpha-1e30", "r-fraction", "config-malformed"}

COMMAND_CASES = [
    pytest.param(cmd, case, ck, words, id=f"{cmd}-{case}")
    for case, ck, words in EXPECTED
    for cmd in (
        ("run-model" if case in NEEDS_MODEL else "run", "inspect")
        + (("predict",) if case in ALSO_PREDICT else ())
        + (("run-model",) if case in ALSO_RUN_MODEL else ())
    )
]


def _peft(dst: Path, cfg_edit=None, tensor_edit=None, cfg_text: str | None = None) -> None:
    shutil.copytree(TINY, dst)
    if cfg_edit:
        cfg = json.loads((dst / "adapter_config.json").read_text())
        cfg_edit(cfg)
        (dst / "adapter_config.json").write_text(json.dumps(cfg))
    if cfg_text is not None:
        if cfg_text:
            (dst / "adapter_config.json").write_text(cfg_text)
        else:
            (dst / "adapter_config.json").unlink()
    if tensor_edit:
        save_file(
            tensor_edit(load_file(str(dst / "adapter_model.safetensors"))), str(dst / "adapter_model.safetensors")
        )


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("ckptval")
    for name, (cfg_edit, tensor_edit, cfg_text) in PEFT.items():
        _peft(w / name, cfg_edit, tensor_edit, cfg_text)
    _peft(w / "config-directory", cfg_text="")
    (w / "config-directory" / "adapter_config.json").mkdir()
    _peft(w / "config-latin1")
    text = (w / "config-latin1" / "adapter_config.json").read_text().replace("runs/", "caf\xe9/")
    (w / "config-latin1" / "adapter_config.json").write_bytes(text.encode("latin-1"))
    _peft(w / "bin-int16")
    tensors = load_file(str(w / "bin-int16" / "adapter_model.safetensors"))
    torch.save({k: v.to(torch.int16) for k, v in tensors.items()}, w / "bin-int16" / "adapter_model.bin")
    (w / "bin-int16" / "adapter_model.safetensors").unlink()
    ints = {k: v.to(torch.int32) for k, v in tensors.items()}
    for name, (tc, kind) in TRAINER.items():
        sd = {"tiny": tensors, "empty": {}, "int": ints}[kind]
        torch.save(sd if tc is None else {"model_state_dict": sd, "tuning_config": tc}, w / name)
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(w / "img.png")
    (w / "cases.jsonl").write_text(json.dumps({"id": 1, "prompt": "<image>What?", "images": ["img.png"]}) + "\n")
    # a series whose second checkpoint is broken: refused before the base model loads
    (w / "series").mkdir()
    _peft(w / "series" / "checkpoint_1")
    _peft(w / "series" / "checkpoint_2", cfg_edit=_cfg(lora_alpha=0))
    return w


@pytest.fixture
def no_model(monkeypatch):
    """Building (and so evaluating) a model fails the test."""

    def refuse(*a, **k):
        raise AssertionError("a model was built for a broken checkpoint")

    monkeypatch.setattr(mmgpt_eval.model.build, "build_base", refuse)
    monkeypatch.setattr(mmgpt_eval.runner, "run_evaluation", refuse)


def _refused(ws: Path, argv: list[str], words: list[str], capsys, monkeypatch) -> str:
    return one_error_line(ws, argv, capsys, monkeypatch, words, max_len=600)


def test_corpus_size():
    assert len(EXPECTED) >= 25 and len(COMMAND_CASES) >= 90
    assert len({c for c, _, _ in EXPECTED}) == len(EXPECTED)


@pytest.mark.parametrize("command,case,ckpt,words", COMMAND_CASES)
def test_broken_checkpoint_is_refused(command, case, ckpt, words, ws, capsys, monkeypatch, no_model):
    _refused(ws, _argv(command, ckpt), words, capsys, monkeypatch)


def test_series_is_checked_before_the_base_model_loads(ws, capsys, monkeypatch, no_model):
    line = _refused(
        ws, RUN + ["--model", "tiny-openflamingo", "--ckpt", "series"], ["checkpoint_2", "<= 0"], capsys, monkeypatch
    )
    assert "adapter_config.json" in line


def test_lora_alpha_flag_is_checked(ws, capsys, monkeypatch):
    """--lora-alpha replaces the stored alpha after the checkpoint is read: checked before evaluation."""

    def refuse(*a, **k):
        raise AssertionError("a model was evaluated with a broken --lora-alpha")

    monkeypatch.setattr(mmgpt_eval.runner, "run_evaluation", refuse)
    argv = RUN + ["--model", "tiny-openflamingo", "--ckpt", "series/checkpoint_1"]
    _refused(ws, argv + ["--lora-alpha", "nan"], ["checkpoint_1", "--lora-alpha", "finite"], capsys, monkeypatch)
    _refused(ws, argv + ["--lora-alpha", "1e30"], ["checkpoint_1", "--lora-alpha", "scaling"], capsys, monkeypatch)


# ------------------------------------------------------------------------------------ the override
def test_override_evaluates_loudly_and_records_it(ws, tmp_path, capsys, monkeypatch):
    """--allow-suspicious-adapter: the run happens, a WARNING names what was accepted, results record it."""
    monkeypatch.chdir(ws)
    out = tmp_path / "accepted"
    argv = ["run", "--tasks", "easyvqa", "--no-progress", "--no-report", "--limit", "2", "--output-dir", str(out)]
    rc = main(argv + ["--ckpt", "alpha-0", "--allow-suspicious-adapter"])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    assert "WARNING" in err and "SUSPICIOUS ADAPTER ACCEPTED (--allow-suspicious-adapter)" in err
    assert "alpha-0/adapter_config.json" in err and "'lora_alpha' = 0" in err
    res = json.loads((out / "results.json").read_text())
    blob = json.dumps(res)
    assert "suspicious_adapter_accepted" in blob and "'lora_alpha' = 0" in blob
    assert "--allow-suspicious-adapter" in res["run"]["argv"]


def test_override_is_not_fingerprinted():
    from mmgpt_eval.config import EvalConfig, meta

    m = meta("allow_suspicious_adapter")
    assert m.fingerprint is None and m.run is None and m.flag.name == "--allow-suspicious-adapter"
    assert EvalConfig(allow_suspicious_adapter=True).load_options.allow_suspicious_adapter is True
    assert EvalConfig().load_options.allow_suspicious_adapter is False


def test_inspect_override_describes_and_lists_the_problem(ws, capsys):
    assert main(["inspect", str(ws / "int32"), "--json", "--allow-suspicious-adapter"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "int32" in d["metadata"]["suspicious_adapter_accepted"][0]


def test_hard_problems_are_not_overridable(ws):
    from mmgpt_eval.model.validate import allow_suspicious_adapters

    with allow_suspicious_adapters(True):
        for name in ("alpha-nan", "r-0", "config-missing", "alpha-missing"):
            with pytest.raises(UserError):
                read_checkpoint(ws / name)
        assert read_checkpoint(ws / "empty-weights").metadata["suspicious_adapter_accepted"]


def test_cast_into_a_model_is_refused_for_any_tensor(tiny_model):
    """Non-LoRA tensors (OpenFlamingo checkpoints, other trained tensors) are checked where they are
    copied into the model: an integer perceiver tensor is refused naming it."""
    from mmgpt_eval.model.checkpoint import CheckpointInfo
    from mmgpt_eval.model.weights import load_openflamingo

    model = tiny_model.model
    key, p = next((k, p) for k, p in model.named_parameters() if k.startswith("perceiver."))
    kept = p.detach().clone()
    info = CheckpointInfo("of.pt", "openflamingo", "v2", {key: torch.zeros(p.shape, dtype=torch.int64)})
    try:
        with pytest.raises(UserError, match=rf"of.pt: tensor {re.escape(key)} has dtype int64"):
            load_openflamingo(model, info, allow_partial=True)
    finally:  # the shared model stays as it was
        with torch.no_grad():
            p.copy_(kept)


# ------------------------------------------------------------------------------------ the bounds
@pytest.mark.parametrize(
    "r,alpha,rslora,ok",
    [
        (16, 16.0, False, True),  # MultiModal-GPT
        (8, 8000.0, False, True),  # scaling 1e3: the bound itself
        (8, 8001.0, False, False),
        (1000, 1.0, False, True),  # scaling 1e-3
        (1000, 0.99, False, False),
        (256, 256.0, True, True),  # rsLoRA: 16
        (4, 1.7e308, False, False),
        (1, -0.5, False, False),
    ],
)
def test_scaling_bounds(r, alpha, rslora, ok):
    from mmgpt_eval.model.checkpoint import LoraSettings
    from mmgpt_eval.model.validate import SCALING_MAX, SCALING_MIN, settings_problems

    assert (SCALING_MIN, SCALING_MAX) == (1e-3, 1e3)
    problems = settings_problems(LoraSettings(r=r, alpha=alpha, use_rslora=rslora, source="x"), "cfg")
    assert (not problems) == ok, problems
    assert all(p.suspicious for p in problems)  # finite values out of range: the override accepts them


def test_valid_adapters_read_as_before(ws):
    info = read_checkpoint(TINY)
    assert (info.lora.r, info.lora.alpha, info.lora.scaling) == (16, 16.0, 1.0)
    assert "suspicious_adapter_accepted" not in info.metadata
    # the weights file of a folder that has its adapter_config.json reads as the folder
    direct = read_checkpoint(ws / "series" / "checkpoint_1" / "adapter_model.safetensors")
    assert direct.format == "peft" and direct.lora.alpha == 16.0 and direct.sha256 == info.sha256


def test_scaling_per_module_pattern():
    """A module's own rank (rank_pattern) goes with the global alpha unless alpha_pattern gives its own."""
    from mmgpt_eval.model.checkpoint import LoraSettings
    from mmgpt_eval.model.validate import settings_problems

    def problems(**kw):
        return settings_problems(LoraSettings(r=16, alpha=2000.0, source="x", **kw), "cfg")

    assert not problems()  # 2000 / 16 = 125
    assert "rank 1 " in problems(rank_pattern={"q_proj": 1})[0].message  # 2000 / 1
    assert not problems(rank_pattern={"q_proj": 1}, alpha_pattern={"q_proj": 1.0})
