"""Commands that run no model import no torch, transformers, open_flamingo or open_clip (issue 25): each
command runs in a fresh interpreter on small run folders and the check is made inside that process,
after the command returned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from datasets import make_vqa_dataset
from fakeruns import make_run

HEAVY = ("torch", "transformers", "open_flamingo", "open_clip")

# runs the command like the console script does, then reports its exit code and the heavy modules loaded
PROBE = """
import json, sys
from mmgpt_eval.cli import main
argv = json.loads(sys.argv[1])
try:
    rc = main(argv)
except SystemExit as e:
    rc = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print("PROBE " + json.dumps({{"rc": rc, "heavy": heavy}}))
""".format(heavy=set(HEAVY))

POLICY = """[defaults]
min_samples = 5
[[rule]]
task = "easyvqa"
metric = "accuracy"
direction = "higher"
margin = 50.0
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("light")
    make_run(w / "base", {"accuracy": [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]})
    make_run(w / "cand", {"accuracy": [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]})
    (w / "gate.toml").write_text(POLICY)
    vqa = make_vqa_dataset(w / "vqa", n_images=2)
    qs = json.loads(vqa["questions"].read_text())["questions"]
    (w / "preds.json").write_text(json.dumps([{"question_id": q["question_id"], "answer": "2"} for q in qs]))
    (w / "vqa-files.json").write_text(json.dumps({k: str(v) for k, v in vqa.items()}))
    return w


def _commands(w: Path) -> dict[str, tuple[list[str], int]]:
    vqa = {k: v for k, v in json.loads((w / "vqa-files.json").read_text()).items()}
    return {
        "version": (["--version"], 0),
        "tasks": (["tasks"], 0),
        "data-check": (["data", "check", "--data-root", str(w / "no-data")], None),
        "compare": (["compare", str(w / "base"), str(w / "cand")], 0),
        "report": (["report", str(w / "cand"), "--baseline", str(w / "base"), "-o", str(w / "r.html")], 0),
        "gate": (
            ["gate", "--baseline", str(w / "base"), "--candidate", str(w / "cand"), "--policy", str(w / "gate.toml")],
            0,
        ),
        "export": (["export", str(w / "base"), str(w / "cand"), "-o", str(w / "export")], 0),
        "score": (
            [
                "score",
                "vqav2",
                "--questions",
                vqa["questions"],
                "--annotations",
                vqa["annotations"],
                "--predictions",
                str(w / "preds.json"),
                "--output",
                str(w / "score.json"),
            ],
            0,
        ),
    }


@pytest.mark.parametrize("name", ["version", "tasks", "data-check", "compare", "report", "gate", "export", "score"])
def test_command_imports_no_model_library(folder, name):
    argv, want_rc = _commands(folder)[name]
    p = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, cwd=folder, timeout=300
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, p.stdout + p.stderr
    got = json.loads(line[len("PROBE ") :])
    if want_rc is not None:
        assert got["rc"] == want_rc, p.stdout + p.stderr
    assert got["heavy"] == [], f"{name} imported {got['heavy'][:8]}"
