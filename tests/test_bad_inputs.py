"""Bad-input corpus: every case is exit code 2, exactly one stderr line ``mmgpt-eval: error: ...``, no
traceback, nothing written -- and (for the cases that must fail before loading) no model loaded.

Runs in-process through ``mmgpt_eval.cli.main``; no case builds a model (``api.load`` and
``model.build.build_base`` fail the test when called). Sections: command-line and file inputs; run folders
through every reader (compare, gate, report, export); nesting depth and size bounds; and Hypothesis
properties (derandomized, a few dozen examples each) over results.json field types, per-sample log edits
and deep nesting."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import pytest
from cli_checks import files_under, one_error_line
import torch
from safetensors.torch import load_file, save_file

import mmgpt_eval.api
import mmgpt_eval.model.build
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.model.checkpoint import SHIPPED_WEIGHTS, allow_nonfinite_tensors, read_checkpoint

from datasets import make_vqa_dataset
from fakeruns import make_run

TINY = SHIPPED_WEIGHTS / "tiny-mmgpt"


def _peft_copy(dst: Path, cfg_edit=None, tensor_edit=None) -> Path:
    shutil.copytree(TINY, dst)
    if cfg_edit:
        cfg = json.loads((dst / "adapter_config.json").read_text())
        cfg_edit(cfg)
        (dst / "adapter_config.json").write_text(json.dumps(cfg))
    if tensor_edit:
        t = load_file(str(dst / "adapter_model.safetensors"))
        tensor_edit(t)
        save_file(t, str(dst / "adapter_model.safetensors"))
    return dst


def _first_lora_a(t):
    return sorted(k for k in t if "lora_A" in k)[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("bad")
    nan_key = {}

    def set_nan(t):
        k = _first_lora_a(t)
        nan_key["k"] = k
        t[k] = torch.full_like(t[k], float("nan"))

    def set_inf(t):
        k = sorted(k for k in t if "lora_B" in k)[0]
        t[k] = t[k].clone()
        t[k].view(-1)[0] = float("inf")

    _peft_copy(w / "nan-adapter", tensor_edit=set_nan)
    (w / "nan_key.txt").write_text(nan_key["k"])
    _peft_copy(w / "inf-adapter", tensor_edit=set_inf)
    _peft_copy(w / "r0-adapter", cfg_edit=lambda c: c.update(r=0))
    _peft_copy(w / "r8-adapter", cfg_edit=lambda c: c.update(r=8))
    _peft_copy(w / "alpha-str-adapter", cfg_edit=lambda c: c.update(lora_alpha="sixteen"))
    _peft_copy(w / "no-r-adapter", cfg_edit=lambda c: c.pop("r"))
    (w / "proto0.pt").write_bytes(pickle.dumps({"a": [1.0, 2.0], "b": "x" * 20}, protocol=0))
    (w / "proto1.pt").write_bytes(pickle.dumps({"a": [1.0, 2.0], "b": "x" * 20}, protocol=1))
    (w / "text.pt").write_text("hello, I am not a checkpoint\n")
    (w / "empty-folder").mkdir()
    (w / "a-dir").mkdir()
    (w / "a-file").write_text("x\n")
    (w / "latin1.json").write_bytes('{"questions": ["caf\xe9"]}'.encode("latin-1"))
    (w / "latin1.jsonl").write_bytes('{"id": 1, "prompt": "caf\xe9"}\n'.encode("latin-1"))
    (w / "latin1.toml").write_bytes('tasks = "caf\xe9"\n'.encode("latin-1"))
    (w / "bad.toml").write_text("tasks = [\n")
    (w / "bad.json").write_text("{not json")
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(w / "img.png")
    (w / "cases.jsonl").write_text(json.dumps({"id": 1, "prompt": "<image>What?", "images": ["img.png"]}) + "\n")
    (w / "dir-image.jsonl").write_text(json.dumps({"id": 1, "prompt": "<image>What?", "images": ["a-dir"]}) + "\n")
    (w / "dup.jsonl").write_text('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n')
    (w / "empty.jsonl").write_text("\n")
    vqa = make_vqa_dataset(w / "vqa", n_images=2)
    q = json.loads(vqa["questions"].read_text())
    q["questions"].append(dict(q["questions"][0]))
    (w / "vqa" / "dup_questions.json").write_text(json.dumps(q))
    a = json.loads(vqa["annotations"].read_text())
    a["annotations"].append(dict(a["annotations"][0]))
    (w / "vqa" / "dup_annotations.json").write_text(json.dumps(a))
    (w / "preds.json").write_text(
        json.dumps(
            [
                {"question_id": x["question_id"], "answer": "2"}
                for x in json.loads(vqa["questions"].read_text())["questions"]
            ]
        )
    )
    make_run(w / "run-a", {"accuracy": [1.0, 0.0, 1.0, 1.0]})
    make_run(w / "run-b", {"accuracy": [1.0, 1.0, 1.0, 0.0]})
    (w / "gate.toml").write_text(
        '[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\ndirection = "higher"\nmargin = 2.0\n'
    )
    for name, text in {
        "r-limit.toml": 'limit = "ten"\n',
        "r-limit0.toml": "limit = 0\n",
        "r-topp.toml": "top_p = 5\n",
        "r-temp.toml": "do_sample = true\ntemperature = 0\n",
        "r-device.toml": 'device = "foo"\n',
        "r-unknown.toml": "lmit = 3\n",
        "r-choice.toml": 'fewshot_selection = "best"\n',
        "r-beams.toml": "num_beams = 0\n",
        "r-bool.toml": 'no_report = "yes"\n',
        "r-list.toml": "limit = [1, 2]\n",
        "r-batch.toml": "batch_size = 0\n",
        "r-outfile.toml": 'output_dir = "a-file"\n',
        "r-precision.toml": 'precision = "fp8"\n',
        "r-table.toml": "[vqav2]\nquestions = 3\nlimit = 1\n",
        "r-maxnew.toml": "max_new_tokens = -1\n",
        "r-label.toml": "label = 3\n",
    }.items():
        (w / name).write_text(text)
    for name, text in {
        "t-unknown.toml": 'model = "tiny"\nmode = "lora"\nbogus_key = 1\n',
        "t-mode.toml": 'model = "tiny"\nmode = "sideways"\n',
        "t-steps.toml": 'model = "tiny"\nmode = "lora"\n[train]\nsteps = "many"\n',
    }.items():
        (w / name).write_text(text)
    return w


_REAL_LOAD = mmgpt_eval.api.load
# with --model and --ckpt the checkpoint is read first thing in api.load, before the base model is built:
# these cases may enter api.load but must fail before model.build.build_base
READS_CKPT_IN_LOAD = {"run-nan-adapter", "predict-nan-adapter"}


V = "vqa/v2_OpenEnded_mscoco_val2014_questions.json"
A = "vqa/v2_mscoco_val2014_annotations.json"
RUN = ["run", "--model", "tiny", "--tasks", "easyvqa", "--no-progress", "--output-dir", "out"]
PRED = ["predict", "--model", "tiny", "--input", "cases.jsonl", "--output", "o.jsonl"]

# (id, argv, words the error line must contain)
CASES = [
    # --- run: generation flags (argparse types from GenerationSettings' declared ranges)
    ("run-max-new-tokens-0", RUN + ["--max-new-tokens", "0"], ["--max-new-tokens", "max_new_tokens"]),
    ("run-max-new-tokens-neg", RUN + ["--max-new-tokens", "-3"], ["--max-new-tokens"]),
    ("run-max-new-tokens-text", RUN + ["--max-new-tokens", "many"], ["--max-new-tokens"]),
    ("run-num-beams-0", RUN + ["--num-beams", "0"], ["--num-beams"]),
    ("run-top-p-5", RUN + ["--top-p", "5"], ["--top-p", "top_p"]),
    ("run-top-p-0", RUN + ["--top-p", "0"], ["--top-p"]),
    ("run-top-p-nan", RUN + ["--top-p", "nan"], ["--top-p"]),
    ("run-top-k-neg", RUN + ["--top-k", "-1"], ["--top-k"]),
    ("run-temperature-neg", RUN + ["--temperature", "-1"], ["--temperature"]),
    ("run-temperature-inf", RUN + ["--temperature", "inf"], ["--temperature"]),
    ("run-sample-temp-0", RUN + ["--do-sample", "--temperature", "0"], ["--temperature", "--do-sample"]),
    ("run-limit-0", RUN + ["--limit", "0"], ["--limit"]),
    ("run-limit-neg", RUN + ["--limit", "-1"], ["--limit"]),
    ("run-limit-text", RUN + ["--limit", "ten"], ["--limit"]),
    ("run-num-fewshot-neg", RUN + ["--num-fewshot", "-1"], ["--num-fewshot"]),
    ("run-batch-size-0", RUN + ["--batch-size", "0"], ["--batch-size"]),
    ("run-batch-size-text", RUN + ["--batch-size", "big"], ["--batch-size"]),
    ("run-device-foo", RUN + ["--device", "foo"], ["--device", "foo"]),
    ("run-device-cuda-x", RUN + ["--device", "cuda:x"], ["--device"]),
    ("run-precision", RUN + ["--precision", "fp8"], ["--precision"]),
    (
        "run-output-dir-file",
        ["run", "--model", "tiny", "--tasks", "easyvqa", "--output-dir", "a-file"],
        ["--output-dir", "a-file"],
    ),
    ("run-unknown-flag", RUN + ["--frobnicate"], ["--frobnicate"]),
    ("run-seed-text", RUN + ["--seed", "x"], ["--seed"]),
    # --- run: checkpoints (found before the base model is built)
    (
        "run-nan-adapter",
        [
            "run",
            "--model",
            "tiny",
            "--ckpt",
            "nan-adapter",
            "--tasks",
            "easyvqa",
            "--output-dir",
            "out",
            "--no-progress",
        ],
        ["NaN", "adapter_model.safetensors", "--allow-nonfinite"],
    ),
    (
        "run-nan-adapter-nomodel",
        ["run", "--ckpt", "nan-adapter", "--tasks", "easyvqa", "--output-dir", "out"],
        ["NaN", "nan-adapter"],
    ),
    (
        "run-inf-adapter",
        ["run", "--ckpt", "inf-adapter", "--tasks", "easyvqa", "--output-dir", "out"],
        ["NaN/inf", "lora_B"],
    ),
    (
        "run-rank-mismatch",
        ["run", "--ckpt", "r8-adapter", "--tasks", "easyvqa", "--output-dir", "out"],
        ["r=8", "rank 16"],
    ),
    ("run-r0", ["run", "--ckpt", "r0-adapter", "--tasks", "easyvqa", "--output-dir", "out"], ["'r'", ">= 1"]),
    ("run-proto0", ["run", "--ckpt", "proto0.pt", "--tasks", "easyvqa", "--output-dir", "out"], ["protocol 0/1"]),
    ("run-text-ckpt", ["run", "--ckpt", "text.pt", "--tasks", "easyvqa", "--output-dir", "out"], ["text.pt"]),
    ("run-missing-ckpt", ["run", "--ckpt", "nope.pt", "--tasks", "easyvqa", "--output-dir", "out"], ["nope.pt"]),
    (
        "run-empty-folder-ckpt",
        ["run", "--ckpt", "empty-folder", "--tasks", "easyvqa", "--output-dir", "out"],
        ["empty-folder", "no checkpoints"],
    ),
    # --- run config files: every value through the flag's own argparse type
    ("cfg-limit-ten", ["run", "--config", "r-limit.toml"], ["r-limit.toml", "limit", "ten"]),
    ("cfg-limit-0", ["run", "--config", "r-limit0.toml"], ["r-limit0.toml", "limit"]),
    ("cfg-top-p", ["run", "--config", "r-topp.toml"], ["r-topp.toml", "top_p"]),
    ("cfg-temperature", ["run", "--config", "r-temp.toml"], ["r-temp.toml", "temperature"]),
    ("cfg-device", ["run", "--config", "r-device.toml"], ["r-device.toml", "device"]),
    ("cfg-unknown-key", ["run", "--config", "r-unknown.toml"], ["r-unknown.toml", "lmit"]),
    ("cfg-choice", ["run", "--config", "r-choice.toml"], ["r-choice.toml", "fewshot_selection"]),
    ("cfg-beams", ["run", "--config", "r-beams.toml"], ["r-beams.toml", "num_beams"]),
    ("cfg-bool", ["run", "--config", "r-bool.toml"], ["r-bool.toml", "no_report"]),
    ("cfg-list", ["run", "--config", "r-list.toml"], ["r-list.toml", "limit"]),
    ("cfg-batch", ["run", "--config", "r-batch.toml"], ["r-batch.toml", "batch_size"]),
    ("cfg-output-file", ["run", "--config", "r-outfile.toml"], ["r-outfile.toml", "output_dir"]),
    ("cfg-precision", ["run", "--config", "r-precision.toml"], ["r-precision.toml", "precision"]),
    ("cfg-max-new", ["run", "--config", "r-maxnew.toml"], ["r-maxnew.toml", "max_new_tokens"]),
    ("cfg-label-int", ["run", "--config", "r-label.toml"], ["r-label.toml", "label"]),
    ("cfg-malformed", ["run", "--config", "bad.toml"], ["bad.toml", "TOML"]),
    ("cfg-latin1", ["run", "--config", "latin1.toml"], ["latin1.toml", "UTF-8"]),
    ("cfg-missing", ["run", "--config", "missing.toml"], ["missing.toml", "not found"]),
    ("cfg-directory", ["run", "--config", "a-dir"], ["a-dir", "directory"]),
    ("task-config-latin1", RUN + ["--task-config", "latin1.toml"], ["latin1.toml", "UTF-8"]),
    # --- run: VQA data files
    (
        "vqa-dup-questions",
        [
            "run",
            "--model",
            "tiny",
            "--tasks",
            "vqav2",
            "--output-dir",
            "out",
            "--vqav2-questions",
            "vqa/dup_questions.json",
            "--vqav2-annotations",
            A,
            "--vqav2-images",
            "vqa/val2014",
        ],
        ["dup_questions.json", "duplicate question_id 1000"],
    ),
    (
        "vqa-dup-annotations",
        [
            "run",
            "--model",
            "tiny",
            "--tasks",
            "vqav2",
            "--output-dir",
            "out",
            "--vqav2-questions",
            V,
            "--vqav2-annotations",
            "vqa/dup_annotations.json",
            "--vqav2-images",
            "vqa/val2014",
        ],
        ["dup_annotations.json", "duplicate question_id 1000"],
    ),
    (
        "vqa-latin1-questions",
        [
            "run",
            "--model",
            "tiny",
            "--tasks",
            "vqav2",
            "--output-dir",
            "out",
            "--vqav2-questions",
            "latin1.json",
            "--vqav2-annotations",
            A,
            "--vqav2-images",
            "vqa/val2014",
        ],
        ["latin1.json", "UTF-8"],
    ),
    # --- predict
    ("predict-output-dir", PRED[:-1] + ["a-dir"], ["a-dir", "directory"]),
    ("predict-output-under-file", PRED[:-1] + ["a-file/o.jsonl"], ["a-file", "not a directory"]),
    (
        "predict-latin1-input",
        ["predict", "--model", "tiny", "--input", "latin1.jsonl", "--output", "o.jsonl"],
        ["latin1.jsonl", "UTF-8"],
    ),
    ("predict-input-dir", ["predict", "--model", "tiny", "--input", "a-dir", "--output", "o.jsonl"], ["a-dir"]),
    (
        "predict-input-missing",
        ["predict", "--model", "tiny", "--input", "nope.jsonl", "--output", "o.jsonl"],
        ["nope.jsonl", "not found"],
    ),
    (
        "predict-image-dir",
        ["predict", "--model", "tiny", "--input", "dir-image.jsonl", "--output", "o.jsonl"],
        ["dir-image.jsonl", "is a directory"],
    ),
    (
        "predict-dup-id",
        ["predict", "--model", "tiny", "--input", "dup.jsonl", "--output", "o.jsonl"],
        ["dup.jsonl", "duplicate id"],
    ),
    ("predict-empty", ["predict", "--model", "tiny", "--input", "empty.jsonl", "--output", "o.jsonl"], ["empty.jsonl"]),
    ("predict-sample-temp-0", PRED + ["--do-sample", "--temperature", "0"], ["temperature"]),
    ("predict-top-p", PRED + ["--top-p", "1.5"], ["--top-p"]),
    ("predict-max-new-0", PRED + ["--max-new-tokens", "0"], ["--max-new-tokens"]),
    ("predict-device", PRED + ["--device", "gpu"], ["--device"]),
    ("predict-nan-adapter", PRED + ["--ckpt", "nan-adapter"], ["NaN", "adapter_model.safetensors"]),
    ("predict-no-input", ["predict", "--model", "tiny", "--output", "o.jsonl"], ["--input"]),
    # --- score
    (
        "score-output-dir",
        ["score", "vqav2", "--questions", V, "--annotations", A, "--predictions", "preds.json", "--output", "a-dir"],
        ["a-dir", "directory"],
    ),
    (
        "score-latin1-predictions",
        ["score", "vqav2", "--questions", V, "--annotations", A, "--predictions", "latin1.json", "--output", "s.json"],
        ["latin1.json", "UTF-8"],
    ),
    (
        "score-malformed-json",
        ["score", "vqav2", "--questions", V, "--annotations", A, "--predictions", "bad.json", "--output", "s.json"],
        ["bad.json", "malformed JSON"],
    ),
    (
        "score-questions-dir",
        [
            "score",
            "vqav2",
            "--questions",
            "a-dir",
            "--annotations",
            A,
            "--predictions",
            "preds.json",
            "--output",
            "s.json",
        ],
        ["a-dir", "directory"],
    ),
    ("score-no-benchmark", ["score"], ["score"]),
    (
        "score-bad-normalization",
        [
            "score",
            "vqav2",
            "--questions",
            V,
            "--annotations",
            A,
            "--predictions",
            "preds.json",
            "--vqa-normalization",
            "loose",
        ],
        ["--vqa-normalization"],
    ),
    (
        "score-coco-output-dir",
        ["score", "coco", "--annotations", A, "--predictions", "preds.json", "--output", "a-dir"],
        ["a-dir", "directory"],
    ),
    # --- inspect
    ("inspect-r0", ["inspect", "r0-adapter"], ["adapter_config.json", "'r'", ">= 1"]),
    ("inspect-no-r", ["inspect", "no-r-adapter"], ["adapter_config.json", "'r'"]),
    ("inspect-alpha-text", ["inspect", "alpha-str-adapter"], ["adapter_config.json", "lora_alpha", "sixteen"]),
    ("inspect-proto0", ["inspect", "proto0.pt"], ["proto0.pt", "protocol 0/1"]),
    ("inspect-proto1", ["inspect", "proto1.pt"], ["proto1.pt", "protocol 0/1"]),
    ("inspect-text", ["inspect", "text.pt"], ["text.pt"]),
    ("inspect-missing", ["inspect", "nope.pt"], ["nope.pt"]),
    ("inspect-empty-folder", ["inspect", "empty-folder"], ["adapter_config.json"]),
    # --- compare / report / gate / train
    ("compare-missing-run", ["compare", "run-a", "nope"], ["nope"]),
    ("compare-bad-resamples", ["compare", "run-a", "run-b", "--resamples", "many"], ["--resamples"]),
    ("report-missing-run", ["report", "nope", "-o", "r.html"], ["nope"]),
    ("report-no-output", ["report", "run-a"], ["--output"]),
    (
        "gate-missing-policy",
        ["gate", "--baseline", "run-a", "--candidate", "run-b", "--policy", "nope.toml"],
        ["nope.toml"],
    ),
    (
        "gate-malformed-policy",
        ["gate", "--baseline", "run-a", "--candidate", "run-b", "--policy", "bad.toml"],
        ["bad.toml"],
    ),
    (
        "gate-latin1-policy",
        ["gate", "--baseline", "run-a", "--candidate", "run-b", "--policy", "latin1.toml"],
        ["latin1.toml", "UTF-8"],
    ),
    ("train-missing-recipe", ["train", "--config", "nope.toml"], ["nope.toml"]),
    ("train-malformed-recipe", ["train", "--config", "bad.toml"], ["bad.toml"]),
    ("train-unknown-key", ["train", "--config", "t-unknown.toml", "--output-dir", "tout"], ["bogus_key"]),
    ("train-bad-mode", ["train", "--config", "t-mode.toml", "--output-dir", "tout"], ["mode"]),
    ("train-bad-steps", ["train", "--config", "t-steps.toml", "--output-dir", "tout"], ["steps"]),
    ("train-steps-flag-0", ["train", "--config", "t-mode.toml", "--steps", "0"], ["--steps"]),
    ("train-output-dir-file", ["train", "--config", "t-mode.toml", "--output-dir", "a-file"], ["a-file"]),
    ("top-unknown-command", ["frobnicate"], ["frobnicate"]),
]

# gate's output paths: checked by cli/gate.py before it reads the runs
GATE_OUTPUT_CASES = {
    "gate-junit-dir": [
        "gate",
        "--baseline",
        "run-a",
        "--candidate",
        "run-b",
        "--policy",
        "gate.toml",
        "--junit",
        "a-dir",
    ],
    "gate-markdown-dir": [
        "gate",
        "--baseline",
        "run-a",
        "--candidate",
        "run-b",
        "--policy",
        "gate.toml",
        "--markdown",
        "a-dir",
    ],
    "gate-json-dir": [
        "gate",
        "--baseline",
        "run-a",
        "--candidate",
        "run-b",
        "--policy",
        "gate.toml",
        "--json",
        "a-dir",
    ],
}


def _check(ws: Path, argv: list[str], capsys, monkeypatch, words: list[str]) -> None:
    one_error_line(ws, argv, capsys, monkeypatch, words)


def test_corpus_size():
    explicit = len(CASES) + len(GATE_OUTPUT_CASES) + len(DEEP_CASES) + len(SIZE_CASES)
    assert explicit + len(RUN_FOLDER_VARIANTS) * len(READERS) >= 150
    assert len({_id(c) for c in CASES}) == len(CASES)


def _id(c):
    return c.values[0] if hasattr(c, "values") else c[0]


@pytest.mark.parametrize("name,argv,words", CASES, ids=[_id(c) for c in CASES])
def test_bad_input(name, argv, words, ws, capsys, monkeypatch, no_load):
    if name in READS_CKPT_IN_LOAD:
        monkeypatch.setattr(mmgpt_eval.api, "load", _REAL_LOAD)
    _check(ws, argv, capsys, monkeypatch, words)


@pytest.mark.parametrize("name", sorted(GATE_OUTPUT_CASES))
def test_bad_output_path_gate(name, ws, capsys, monkeypatch, no_load):
    """gate's --markdown/--junit/--json paths are checked before any work."""
    _check(ws, GATE_OUTPUT_CASES[name], capsys, monkeypatch, ["a-dir", "directory"])


# ------------------------------------------------------------------------------- unit checks
def test_nonfinite_names_tensor_and_file(ws):
    key = (ws / "nan_key.txt").read_text()
    with pytest.raises(UserError) as e:
        read_checkpoint(ws / "nan-adapter")
    msg = str(e.value)
    assert key in msg and "adapter_model.safetensors" in msg and "\n" not in msg


def test_allow_nonfinite_warns(ws, caplog):
    with allow_nonfinite_tensors(True), caplog.at_level("WARNING", logger="mmgpt_eval"):
        info = read_checkpoint(ws / "nan-adapter")
    assert info.metadata["nonfinite_tensors"] and "NON-FINITE" in caplog.text


def test_allow_nonfinite_flag_and_load_options(ws, capsys, monkeypatch):
    from mmgpt_eval.api import LoadOptions
    from mmgpt_eval.cli import build_parser

    assert LoadOptions().allow_nonfinite is False
    args = build_parser(["run"]).parse_args(["run", "--allow-nonfinite"])
    assert args.allow_nonfinite is True
    seen = {}

    def fake_load_model(spec, ckpt, **kw):
        seen["info"] = read_checkpoint(ckpt)  # inside api.load's allow_nonfinite_tensors block
        raise UserError("stop here")

    monkeypatch.setattr(mmgpt_eval.model.build, "load_model", fake_load_model)
    with pytest.raises(UserError, match="stop here"):
        mmgpt_eval.api.load("tiny", ws / "nan-adapter", LoadOptions(allow_nonfinite=True))
    assert seen["info"].metadata["nonfinite_tensors"]


def test_inspect_reports_nonfinite_instead_of_failing(ws, capsys):
    assert main(["inspect", str(ws / "nan-adapter"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nonfinite_tensors"]


def test_shipped_adapter_still_reads():
    info = read_checkpoint(TINY)
    assert info.lora.r == 16


def test_generation_settings_validate():
    from mmgpt_eval.generation_settings import GenerationSettings as G

    G().validate()
    for bad in (
        dict(max_new_tokens=0),
        dict(num_beams=0),
        dict(top_p=5.0),
        dict(top_p=0.0),
        dict(top_k=-1),
        dict(do_sample=True, temperature=0.0),
        dict(length_penalty=float("inf")),
        dict(num_beams=1.5),
        dict(min_new_tokens=40),
    ):
        with pytest.raises(UserError):
            G(**bad).validate("here")


def test_bug_prints_traceback_and_exit_3(monkeypatch, capsys):
    import mmgpt_eval.model.checkpoint as ck  # `inspect` imports its reader when it runs

    def boom(*a, **k):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(ck, "read_checkpoint", boom)
    assert main(["inspect", "whatever"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "bug" in err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "module, fix",
    [
        ("open_flamingo", "pip install --no-deps open-flamingo==2.0.1"),
        ("einops_exts.einops_exts", "pip install einops-exts"),
        ("openai", "pip install openai"),
    ],
)
def test_a_missing_known_package_is_bad_input_with_the_fix(monkeypatch, capsys, module, fix):
    """A package the environment lacks is the user's to install, wherever the import happens: one line
    with the command (exit 2), never "this is a bug"; an unknown missing module stays a bug (exit 3)."""
    import mmgpt_eval.model.checkpoint as ck

    def missing(*a, **k):
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(ck, "read_checkpoint", missing)
    assert main(["inspect", "whatever"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fix in err[0] and "bug" not in err[0]

    def unknown(*a, **k):
        raise ModuleNotFoundError("No module named 'not_a_dependency'", name="not_a_dependency")

    monkeypatch.setattr(ck, "read_checkpoint", unknown)
    assert main(["inspect", "whatever"]) == 3
    assert "bug" in capsys.readouterr().err


def test_logging_goes_to_stderr(capsys):
    import logging

    main(["-q", "tasks"])  # sets up the handler
    capsys.readouterr()
    logging.getLogger("mmgpt_eval").warning("a log line")
    out, err = capsys.readouterr()
    assert "a log line" in err and "a log line" not in out


_PARSER: list = []


@pytest.fixture
def fast_parser(monkeypatch):
    """``main`` with the command-line parser built once for this file's cases (building it discovers
    every task's options: most of a failing command's time); the cases here pass no --include-path."""
    import mmgpt_eval.cli as cli

    real = cli.build_parser
    if not _PARSER:
        _PARSER.append(real([]))
    monkeypatch.setattr(cli, "build_parser", lambda argv=None: _PARSER[0])


# ------------------------------------------------------------------------------- run folders (issue 27: 3)
# Every reader of a run folder (compare, gate, report, export) validates it the same way
# (results.read_run): each variant below is refused by each reader, exit 2, one line naming the problem.
READERS = {
    "compare": lambda run: ["compare", "run-a", run, "--resamples", "200", "--json", "cmp.json"],
    "gate": lambda run: [
        "gate",
        "--baseline",
        "run-a",
        "--candidate",
        run,
        "--policy",
        "gate.toml",
        "--json",
        "g.json",
    ],
    "report": lambda run: ["report", "run-a", run, "-o", "rep.html"],
    "export": lambda run: ["export", run, "-o", "exported"],
}


def _records(lines: list[str]) -> list[dict]:
    return [json.loads(s) for s in lines]


def _with_record(i: int, edit):
    """A log edit: record ``i`` (0 = the header line) edited in place by ``edit(record)``."""

    def go(lines: list[str]) -> list[str]:
        recs = _records(lines)
        edit(recs[i])
        return [json.dumps(r) for r in recs]

    return go


def _task(edit):
    """A results edit applied to the task's entry."""
    return lambda d: edit(d["tasks"]["easyvqa"])


def _info(edit):
    return _task(lambda t: edit(t["metric_info"]["accuracy"]))


def _nest(depth: int, kind: str = "list") -> str:
    """JSON text nested ``depth`` levels deep (built as text: json.dumps itself would recurse)."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def _raw_results(text_edit):
    """A results edit on the file's text (for what json.dumps cannot write)."""
    return ("raw", text_edit)


# name -> (results edit, log edit, words the error line must contain); the log's records are at lines
# 1..4 (line 0 is the header), per-sample accuracy [1, 0, 1, 1] (75.0)
RUN_FOLDER_VARIANTS = {
    # the log against the results
    "dup-id": (None, _with_record(4, lambda r: r.update(id="0")), ["easyvqa.jsonl", "repeats sample id '0'"]),
    "edited-sample-metric": (None, _with_record(2, lambda r: r["metrics"].update(accuracy=1.0)), ["disagree"]),
    "edited-aggregate": (_task(lambda t: t["metrics"].update(accuracy=80.0)), None, ["easyvqa/accuracy", "disagree"]),
    "fewer-records": (None, lambda lines: lines[:-1], ["3 records", "4 samples"]),
    "extra-record": (None, lambda lines: lines + [json.dumps({"id": "9", "metrics": {}})], ["no fingerprint"]),
    "fingerprint-differs": (_task(lambda t: t.update(fingerprint="abc")), None, ["fingerprint", "abc"]),
    "log-of-other-task": (None, _with_record(0, lambda h: h["mmgpt-eval/samples"].update(task="vqav2")), ["vqav2"]),
    "no-header": (None, lambda lines: lines[1:], ["no header"]),
    "second-header": (None, lambda lines: lines[:2] + lines[:1] + lines[2:], ["second header"]),
    "record-without-id": (None, _with_record(1, lambda r: r.pop("id")), ["with an id"]),
    "record-id-list": (None, _with_record(1, lambda r: r.update(id=[0])), ["id", "[0]"]),
    "record-id-null": (None, _with_record(1, lambda r: r.update(id=None)), ["id", "null"]),
    "record-metric-text": (None, _with_record(1, lambda r: r["metrics"].update(accuracy="yes")), ["not a number"]),
    "record-metrics-list": (None, _with_record(1, lambda r: r.update(metrics=[])), ["metrics must be an object"]),
    "record-not-json": (None, lambda lines: lines[:2] + ["{oops"] + lines[2:], ["malformed JSON"]),
    "samples-outside": (_task(lambda t: t.update(samples_file="../run-a/samples/easyvqa.jsonl")), None, ["outside"]),
    "samples-missing": (_task(lambda t: t.update(samples_file="samples/nope.jsonl")), None, ["nope.jsonl"]),
    # the results file: schema, version, the type of every field
    "schema-version-99": (lambda d: d.update(schema_version=99), None, ["schema version 99"]),
    "schema-version-text": (lambda d: d.update(schema_version="2"), None, ["schema version 2"]),
    "not-results": (lambda d: d.update(schema="other/thing"), None, ["not an mmgpt-eval results file"]),
    "results-array": (lambda d: d.clear() or d.update(_list=True), None, ["not an mmgpt-eval results file"]),
    "missing-n-samples": (_task(lambda t: t.pop("n_samples")), None, ["tasks.easyvqa.n_samples", "missing"]),
    "n-samples-text": (_task(lambda t: t.update(n_samples="ten")), None, ["tasks.easyvqa.n_samples", '"ten"']),
    "n-samples-negative": (_task(lambda t: t.update(n_samples=-4)), None, ["tasks.easyvqa.n_samples", "-4"]),
    "n-samples-float": (_task(lambda t: t.update(n_samples=4.0)), None, ["tasks.easyvqa.n_samples", "4.0"]),
    "n-available-list": (_task(lambda t: t.update(n_available=[4])), None, ["tasks.easyvqa.n_available"]),
    "limit-text": (_task(lambda t: t.update(limit="all")), None, ["tasks.easyvqa.limit"]),
    "metric-text": (_task(lambda t: t["metrics"].update(accuracy="75")), None, ["tasks.easyvqa.metrics.accuracy"]),
    "metric-bool": (_task(lambda t: t["metrics"].update(accuracy=True)), None, ["metrics.accuracy", "true"]),
    "metrics-list": (_task(lambda t: t.update(metrics=[75.0])), None, ["tasks.easyvqa.metrics", "an array"]),
    "kind-unknown": (_info(lambda i: i.update(kind="ratio")), None, ["metric_info.accuracy.kind", '"ratio"']),
    "kind-missing": (_info(lambda i: i.pop("kind")), None, ["metric_info.accuracy.kind", "missing"]),
    "scale-text": (_info(lambda i: i.update(scale="100")), None, ["metric_info.accuracy.scale", '"100"']),
    "scale-zero": (_info(lambda i: i.update(scale=0)), None, ["metric_info.accuracy.scale", "> 0"]),
    "scale-nan": (_info(lambda i: i.update(scale=float("nan"))), None, ["metric_info.accuracy.scale", "nan"]),
    "higher-is-better-text": (_info(lambda i: i.update(higher_is_better="yes")), None, ["higher_is_better"]),
    "per-sample-number": (_info(lambda i: i.update(per_sample=1)), None, ["metric_info.accuracy.per_sample"]),
    "metric-info-entry-list": (_task(lambda t: t["metric_info"].update(accuracy=[])), None, ["metric_info.accuracy"]),
    "primary-metric-number": (_task(lambda t: t.update(primary_metric=0)), None, ["tasks.easyvqa.primary_metric"]),
    "template-list": (_task(lambda t: t.update(template=["mmgpt"])), None, ["tasks.easyvqa.template"]),
    "template-name-number": (_task(lambda t: t["template"].update(name=1)), None, ["tasks.easyvqa.template.name"]),
    "generation-text": (_task(lambda t: t.update(generation="greedy")), None, ["tasks.easyvqa.generation"]),
    "notes-numbers": (_task(lambda t: t.update(notes=[1, 2])), None, ["tasks.easyvqa.notes"]),
    "num-fewshot-text": (_task(lambda t: t.update(num_fewshot="0")), None, ["tasks.easyvqa.num_fewshot"]),
    "samples-file-number": (_task(lambda t: t.update(samples_file=3)), None, ["tasks.easyvqa.samples_file"]),
    "fingerprint-null": (_task(lambda t: t.update(fingerprint=None)), None, ["tasks.easyvqa.fingerprint"]),
    "task-entry-text": (lambda d: d["tasks"].update(easyvqa="x"), None, ["tasks.easyvqa", "expected an object"]),
    "tasks-list": (lambda d: d.update(tasks=[]), None, ["tasks: expected an object"]),
    "run-list": (lambda d: d.update(run=[]), None, ["run: expected an object"]),
    "run-label-number": (lambda d: d["run"].update(label=7), None, ["run.label"]),
    "model-null": (lambda d: d.update(model=None), None, ["model: expected an object"]),
    "checkpoint-text": (lambda d: d["model"].update(checkpoint="ck.pt"), None, ["model.checkpoint"]),
    "provenance-text": (lambda d: d.update(provenance="x"), None, ["provenance"]),
    "baseline-text": (lambda d: d.update(baseline="run-a"), None, ["baseline: expected an object or null"]),
    "baseline-results-number": (lambda d: d.update(baseline={"results": 3}), None, ["baseline.results"]),
    # nesting (issue 27: 4): past the recursion limit, and just past the documented depth
    "results-deep-5000": (_raw_results(lambda s: s.replace('"argv": []', '"argv": ' + _nest(5000))), None, ["deeper"]),
    "results-deep-65": (_raw_results(lambda s: s.replace('"argv": []', '"argv": ' + _nest(65, "dict"))), None, ["64"]),
    "log-deep-5000": (None, lambda ls: ls[:1] + [ls[1][:-1] + ', "raw": ' + _nest(5000) + "}"] + ls[2:], ["deeper"]),
    "log-deep-65": (None, lambda ls: ls[:2] + [ls[2][:-1] + ', "x": ' + _nest(65, "dict") + "}"] + ls[3:], [":3:"]),
}


def _bad_run(ws: Path, name: str) -> str:
    """``ws/rf-<name>``: run-a's copy with the variant's edits."""
    results_edit, log_edit, _ = RUN_FOLDER_VARIANTS[name]
    dst = ws / f"rf-{name}"
    if dst.exists():
        return dst.name
    shutil.copytree(ws / "run-a", dst)
    res, log = dst / "results.json", dst / "samples" / "easyvqa.jsonl"
    if isinstance(results_edit, tuple):
        res.write_text(results_edit[1](res.read_text()))
    elif results_edit is not None:
        d = json.loads(res.read_text())
        results_edit(d)
        res.write_text("[]" if d.get("_list") else json.dumps(d))
    if log_edit is not None:
        log.write_text("\n".join(log_edit(log.read_text().splitlines())) + "\n")
    return dst.name


@pytest.fixture(scope="module")
def bad_runs(ws: Path) -> Path:
    for name in RUN_FOLDER_VARIANTS:
        _bad_run(ws, name)
    return ws


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("variant", sorted(RUN_FOLDER_VARIANTS))
def test_every_reader_refuses_a_bad_run_folder(variant, reader, bad_runs, capsys, monkeypatch, no_load, fast_parser):
    words = RUN_FOLDER_VARIANTS[variant][2]
    _check(bad_runs, READERS[reader](f"rf-{variant}"), capsys, monkeypatch, [f"rf-{variant}", *words])


def test_the_good_run_folder_passes_every_reader(bad_runs, monkeypatch, tmp_path):
    """The variants' source folder is valid for every reader (so each refusal above is the variant's)."""
    for reader, argv in READERS.items():
        out = tmp_path / reader
        out.mkdir()
        for name in ("run-a", "run-b"):
            shutil.copytree(bad_runs / name, out / name)
        (out / "gate.toml").write_text((bad_runs / "gate.toml").read_text() + "min_samples = 1\n")
        monkeypatch.chdir(out)
        assert main(["-q"] + argv("run-b")) == 0, reader


# ------------------------------------------------------------------------------- bounded parsing (issue 27: 4)
def _deep_inputs(w: Path) -> None:
    deep = _nest(3000)
    (w / "deep-policy.toml").write_text(
        '[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\ndirection = "higher"\nmargin = 2.0\nx = ' + deep + "\n"
    )
    (w / "deep65-policy.toml").write_text("[" + ".".join(["t"] * 65) + "]\nx = 1\n")
    (w / "deep-config.toml").write_text("limit = " + deep + "\n")
    (w / "deep-inline-config.toml").write_text("limit = " + "{a = " * 70 + "1" + "}" * 70 + "\n")
    (w / "deep-spec.toml").write_text('name = "x"\nlm = ' + deep + "\n")
    (w / "deep-cases.jsonl").write_text(json.dumps({"id": 1, "prompt": "a"}) + "\n" + _nest(3000) + "\n")
    (w / "deep65-cases.jsonl").write_text('{"id": 1, "prompt": "a", "x": ' + _nest(65, "dict") + "}\n")
    (w / "deep-preds.json").write_text(_nest(3000))
    (w / "deep65-preds.json").write_text(_nest(65))
    (w / "deep-gate.json").write_text(_nest(3000, "dict"))
    (w / "deep-train.toml").write_text('model = "tiny"\nmode = "lora"\nsteps = ' + deep + "\n")
    q = json.loads((w / V).read_text())
    (w / "vqa" / "deep_questions.json").write_text(json.dumps(q)[:-1] + ', "x": ' + _nest(3000) + "}")
    _peft_copy(w / "deep-adapter")
    cfg = (w / "deep-adapter" / "adapter_config.json").read_text().rstrip()
    (w / "deep-adapter" / "adapter_config.json").write_text(cfg[:-1] + ', "x": ' + _nest(3000) + "}")
    (w / "deep-series").mkdir()
    (w / "deep-series" / "series.json").write_text('{"checkpoints": ' + _nest(3000) + "}")


SCORE = ["score", "vqav2", "--questions", V, "--annotations", A, "--output", "s.json", "--predictions"]
VQA_RUN = RUN[:4] + ["vqav2", "--output-dir", "out", "--vqav2-annotations", A, "--vqav2-images", "vqa/val2014"]
DEEP_CASES = [
    ("gate-deep-policy", ["gate", "--baseline", "run-a", "--candidate", "run-b", "--policy", "deep-policy.toml"]),
    ("gate-deep65-policy", ["gate", "--baseline", "run-a", "--candidate", "run-b", "--policy", "deep65-policy.toml"]),
    ("run-deep-config", ["run", "--config", "deep-config.toml"]),
    ("run-deep-inline-config", ["run", "--config", "deep-inline-config.toml"]),
    ("run-deep-model-spec", ["run", "--model", "deep-spec.toml", "--tasks", "easyvqa", "--output-dir", "out"]),
    ("run-deep-vqa-questions", VQA_RUN + ["--vqav2-questions", "vqa/deep_questions.json"]),
    ("run-deep-adapter-config", ["run", "--ckpt", "deep-adapter", "--tasks", "easyvqa", "--output-dir", "out"]),
    ("inspect-deep-adapter-config", ["inspect", "deep-adapter"]),
    ("predict-deep-input", ["predict", "--model", "tiny", "--input", "deep-cases.jsonl", "--output", "o.jsonl"]),
    ("predict-deep65-input", ["predict", "--model", "tiny", "--input", "deep65-cases.jsonl", "--output", "o.jsonl"]),
    ("score-deep-predictions", SCORE + ["deep-preds.json"]),
    ("score-deep65-predictions", SCORE + ["deep65-preds.json"]),
    ("report-deep-gate-json", ["report", "run-a", "-o", "r.html", "--gate", "deep-gate.json"]),
    ("export-deep-series", ["export", "deep-series", "-o", "exported"]),
    ("train-deep-recipe", ["train", "--config", "deep-train.toml", "--output-dir", "tout"]),
]


@pytest.fixture(scope="module")
def deep_ws(ws: Path) -> Path:
    _deep_inputs(ws)
    return ws


@pytest.mark.parametrize("name,argv", DEEP_CASES, ids=[c[0] for c in DEEP_CASES])
def test_deep_nesting_is_one_line(name, argv, deep_ws, capsys, monkeypatch, no_load, fast_parser):
    if name == "run-deep-model-spec":  # the spec is read first thing in api.load, before any model is built
        monkeypatch.setattr(mmgpt_eval.api, "load", _REAL_LOAD)
    _check(deep_ws, argv, capsys, monkeypatch, ["nested deeper than 64"])


# (id, kind of MAX_BYTES, its size for the case, argv, words): a file over its bound is one line, exit 2
GATE_AB = ["gate", "--baseline", "run-a", "--candidate", "run-b", "--policy", "gate.toml"]
SIZE_CASES = [
    ("results-json", "results", 1024, ["compare", "run-a", "run-b"], ["run-a/results.json", "larger than 1 KiB"]),
    ("samples-line-gate", "jsonl-line", 100, GATE_AB, ["run-a/samples/easyvqa.jsonl:2", "longer than 100 bytes"]),
    ("samples-header-report", "jsonl-line", 20, ["report", "run-a", "-o", "r.html"], ["easyvqa.jsonl:1", "longer"]),
    ("samples-line-export", "jsonl-line", 100, ["export", "run-a", "-o", "exported"], ["easyvqa.jsonl:2"]),
    ("policy-toml", "config", 10, GATE_AB, ["gate.toml", "larger than 10 bytes"]),
    ("run-config", "config", 10, ["run", "--config", "r-limit.toml"], ["r-limit.toml", "larger than"]),
    ("predict-input-line", "jsonl-line", 20, PRED, ["cases.jsonl:1", "longer than 20 bytes"]),
    ("score-predictions", "data", 50, SCORE + ["preds.json"], ["vqa/", "larger than 50 bytes"]),
    ("vqa-questions", "data", 50, VQA_RUN + ["--vqav2-questions", V], ["vqa/", "larger than"]),
]


@pytest.mark.parametrize("name,kind,size,argv,words", SIZE_CASES, ids=[c[0] for c in SIZE_CASES])
def test_size_bounds_are_one_line(name, kind, size, argv, words, ws, capsys, monkeypatch, no_load, fast_parser):
    import mmgpt_eval.io

    monkeypatch.setitem(mmgpt_eval.io.MAX_BYTES, kind, size)
    _check(ws, argv, capsys, monkeypatch, words)


def test_depth_and_size_bounds_are_documented_constants():
    from mmgpt_eval import io

    assert io.MAX_DEPTH == 64 and set(io.MAX_BYTES) == {"data", "results", "config", "jsonl-line"}
    assert io.depth_exceeds(json.loads(_nest(65))) and not io.depth_exceeds(json.loads(_nest(64)))
    assert io.loads_json(_nest(64, "dict"), "f") is not None
    with pytest.raises(UserError, match="nested deeper than 64"):
        io.loads_json(_nest(65, "dict"), "f")


def test_internal_error_in_a_reader_exits_3_not_1(ws, monkeypatch, capsys):
    """A bug (an unexpected exception) is exit 3 with its traceback, never the gate's 1."""
    import mmgpt_eval.results as results

    monkeypatch.setattr(results, "check_run", lambda *a, **k: 1 / 0)
    monkeypatch.chdir(ws)
    assert main(["gate", "--baseline", "run-a", "--candidate", "run-b", "--policy", "gate.toml"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "this is a bug" in err.strip().splitlines()[-1]


# ------------------------------------------------------------------------------- property-based (Hypothesis)
# Generated cases, deterministic (derandomize: the same examples on every run) and few per property.
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6
)


def _is_int(v) -> bool:
    return type(v) is int


def _number(v) -> bool:
    return type(v) in (int, float)


# results.json fields (a path into the file) and what a valid value is, written independently of
# mmgpt_eval.results_schema: any other value must be refused naming the field
T = ("tasks", "easyvqa")
MI = T + ("metric_info", "accuracy")
RESULTS_FIELDS = {
    ("schema_version",): lambda v: v in (1, 2) and not isinstance(v, bool),
    ("run",): lambda v: isinstance(v, dict),
    ("model",): lambda v: isinstance(v, dict),
    ("provenance",): lambda v: isinstance(v, dict),
    ("tasks",): lambda v: isinstance(v, dict),
    ("baseline",): lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("results"), str)),
    ("run", "label"): lambda v: v is None or isinstance(v, str),
    ("model", "checkpoint"): lambda v: v is None or isinstance(v, dict),
    T: lambda v: isinstance(v, dict),
    T + ("n_samples",): lambda v: _is_int(v) and v >= 0,
    T + ("n_available",): lambda v: _is_int(v) and v >= 0,
    T + ("limit",): lambda v: v is None or (_is_int(v) and v >= 0),
    T + ("num_fewshot",): lambda v: _is_int(v) and v >= 0,
    T + ("metrics",): lambda v: isinstance(v, dict) and all(x is None or _number(x) for x in v.values()),
    T + ("metrics", "accuracy"): lambda v: v is None or _number(v),
    T + ("metric_info",): lambda v: isinstance(v, dict) and not v,
    T + ("primary_metric",): lambda v: isinstance(v, str),
    T + ("template",): lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    T + ("generation",): lambda v: isinstance(v, dict),
    T + ("notes",): lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    T + ("samples_file",): lambda v: isinstance(v, str),
    MI: lambda v: False,  # any replacement lacks a kind or has another type
    MI + ("kind",): lambda v: v in ("binary", "continuous", "corpus", "corpus-only"),
    MI + ("scale",): lambda v: _number(v) and math.isfinite(v) and v > 0,
    MI + ("higher_is_better",): lambda v: isinstance(v, bool),
    MI + ("per_sample",): lambda v: v is None or isinstance(v, str),
}
FIELD_PATHS = sorted(RESULTS_FIELDS)


def _scratch(ws: Path) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(dir=ws / "hyp"))


def _run_reader(ws: Path, d: Path, reader: str, run: Path, capsys) -> tuple[int, str]:
    """``reader`` on ``run`` (against ws/run-a); outputs would go to ``d``: nothing may appear there."""
    before = files_under(d)
    argv = {
        "compare": ["compare", str(ws / "run-a"), str(run), "--resamples", "100", "--json", str(d / "c.json")],
        "gate": ["gate", "--baseline", str(ws / "run-a"), "--candidate", str(run), "--policy", str(ws / "gate.toml")]
        + ["--json", str(d / "g.json"), "--markdown", str(d / "g.md")],
        "report": ["report", str(ws / "run-a"), str(run), "-o", str(d / "r.html")],
        "export": ["export", str(run), "-o", str(d / "exported")],
    }[reader]
    capsys.readouterr()
    rc = main(["-q"] + argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmgpt-eval: error: "), (rc, err)
    assert files_under(d) == before, f"written: {sorted(files_under(d) - before)}"
    return rc, lines[0]


@pytest.fixture(scope="module")
def hyp_ws(ws: Path) -> Path:
    (ws / "hyp").mkdir(exist_ok=True)
    return ws


def _set(d: dict, path: tuple, value) -> None:
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


@settings(PROPERTY, max_examples=45)
@given(path=st.sampled_from(FIELD_PATHS), value=JSON_VALUES, reader=st.sampled_from(sorted(READERS)))
def test_property_results_field_of_another_type(path, value, reader, hyp_ws, capsys, no_load, fast_parser):
    """Any results.json field given a value of another type: every reader refuses it in one line that
    names the file and the field (exit 2), writing nothing."""
    assume(not RESULTS_FIELDS[path](value))
    d = _scratch(hyp_ws)
    shutil.copytree(hyp_ws / "run-a", d / "run")
    res = json.loads((d / "run" / "results.json").read_text())
    _set(res, path, value)
    (d / "run" / "results.json").write_text(json.dumps(res))
    rc, line = _run_reader(hyp_ws, d, reader, d / "run", capsys)
    assert rc == 2
    assert "results.json" in line, line
    assert ("schema version" if path == ("schema_version",) else path[-1]) in line, line


LOG_MUTATIONS = ("id", "metrics", "value", "number", "dup", "dup-text", "line", "insert")
TEXT_LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1, max_size=30
)


@settings(PROPERTY, max_examples=45)
@given(
    mutation=st.sampled_from(LOG_MUTATIONS),
    at=st.integers(min_value=1, max_value=4),
    value=JSON_VALUES,
    big=st.floats(min_value=2.0, max_value=1e9),
    text=TEXT_LINE,
    reader=st.sampled_from(sorted(READERS)),
)
def test_property_per_sample_log_edits(mutation, at, value, big, text, reader, hyp_ws, capsys, no_load, fast_parser):
    """A per-sample log edited in any of these ways -- an id that is not a string or integer, metrics
    that are not an object, a per-sample value that is not a number, a value that changes the mean, two
    records with one id, a record replaced by another JSON value, any non-blank line inserted -- is
    refused by every reader in one line naming the log (exit 2), writing nothing."""
    d = _scratch(hyp_ws)
    shutil.copytree(hyp_ws / "run-a", d / "run")
    log = d / "run" / "samples" / "easyvqa.jsonl"
    lines = log.read_text().splitlines()
    rec = json.loads(lines[at])
    if mutation == "id":
        assume(not (type(value) is str or type(value) is int))
        rec["id"] = value
    elif mutation == "metrics":
        assume(not isinstance(value, dict))
        rec["metrics"] = value
    elif mutation == "value":
        assume(value is not None and not _number(value))
        rec["metrics"]["accuracy"] = value
    elif mutation == "number":
        rec["metrics"]["accuracy"] = big  # per-sample values are 0/1: the mean moves by >= 25 points
    elif mutation == "dup":
        rec["id"] = json.loads(lines[1 + at % 4])["id"]
    elif mutation == "dup-text":
        rec["id"] = text
        other = json.loads(lines[1 + at % 4])
        other["id"] = text
        lines[1 + at % 4] = json.dumps(other)
    elif mutation == "line":
        assume(not isinstance(value, dict))
        rec = value
    if mutation == "insert":
        assume(text.strip())
        lines.insert(at, text)
    else:
        lines[at] = json.dumps(rec)
    log.write_text("\n".join(lines) + "\n")
    rc, line = _run_reader(hyp_ws, d, reader, d / "run", capsys)
    assert rc == 2
    assert "easyvqa.jsonl" in line, line


NEST_PLACES = ("results", "log", "policy", "config", "predict", "score")


@settings(PROPERTY, max_examples=30)
@given(
    place=st.sampled_from(NEST_PLACES),
    depth=st.one_of(st.integers(min_value=65, max_value=200), st.integers(min_value=900, max_value=5000)),
    kinds=st.lists(st.sampled_from("[{"), min_size=1, max_size=4),
)
def test_property_deep_nesting_anywhere(place, depth, kinds, hyp_ws, capsys, no_load, fast_parser):
    """Arrays/objects nested deeper than 64 (just past the bound, or past Python's recursion limit), in a
    results file, a per-sample log, a gate policy, a run config, predict's input or score's predictions:
    one line naming the file, exit 2, nothing written."""
    d = _scratch(hyp_ws)
    opens = [kinds[i % len(kinds)] for i in range(depth)]
    if place in ("policy", "config"):  # TOML: inline arrays and inline tables
        text = "".join("[" if k == "[" else "{a = " for k in opens) + "1"
        text += "".join("]" if k == "[" else "}" for k in reversed(opens))
    else:
        text = "".join("[" if k == "[" else '{"a": ' for k in opens) + "1"
        text += "".join("]" if k == "[" else "}" for k in reversed(opens))
    ws = hyp_ws
    if place in ("results", "log"):
        shutil.copytree(ws / "run-a", d / "run")
        if place == "results":
            f = d / "run" / "results.json"
            f.write_text(f.read_text().replace('"argv": []', '"argv": ' + text))
        else:
            f = d / "run" / "samples" / "easyvqa.jsonl"
            lines = f.read_text().splitlines()
            lines[2] = lines[2][:-1] + ', "raw": ' + text + "}"
            f.write_text("\n".join(lines) + "\n")
        argv = ["compare", str(ws / "run-a"), str(d / "run"), "--json", str(d / "c.json")]
    elif place == "policy":
        f = d / "gate.toml"
        f.write_text((ws / "gate.toml").read_text() + "extra = " + text + "\n")
        argv = ["gate", "--baseline", str(ws / "run-a"), "--candidate", str(ws / "run-b"), "--policy", str(f)]
    elif place == "config":
        f = d / "run.toml"
        f.write_text("limit = " + text + "\n")
        argv = ["run", "--config", str(f), "--output-dir", str(d / "out")]
    elif place == "predict":
        f = d / "cases.jsonl"
        f.write_text(json.dumps({"id": 1, "prompt": "a"}) + "\n" + text + "\n")
        argv = ["predict", "--model", "tiny", "--input", str(f), "--output", str(d / "o.jsonl")]
    else:
        f = d / "preds.json"
        f.write_text(text)
        argv = ["score", "vqav2", "--questions", str(ws / V), "--annotations", str(ws / A)]
        argv += ["--predictions", str(f), "--output", str(d / "s.json")]
    before = files_under(d)
    capsys.readouterr()
    rc = main(["-q"] + argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (rc, err[-2000:])
    assert "nested deeper than 64" in lines[0] and f.name in lines[0], lines[0]
    assert files_under(d) == before
