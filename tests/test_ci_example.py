"""examples/ci: the documented gate runs on the embedded model against the stored baseline (our own CI
runs the same gate): the same model passes; the base model without its adapter is a regression."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "examples" / "ci"


def _gate(ckpt_args: list[str], out: Path) -> int:
    from mmgpt_eval.cli import main

    assert (
        main(["-q", "run", "--config", str(CI / "ci.toml"), *ckpt_args, "--output-dir", str(out), "--no-report"]) == 0
    )
    return main(
        [
            "gate",
            "--baseline",
            str(CI / "baseline"),
            "--candidate",
            str(out),
            "--policy",
            str(CI / "gate.toml"),
            "--markdown",
            str(out / "gate.md"),
            "--junit",
            str(out / "gate.xml"),
        ]
    )


@pytest.mark.slow
def test_same_model_passes(tmp_path):
    assert _gate([], tmp_path / "same") == 0  # the embedded default, as when the baseline was made
    assert "PASS" in (tmp_path / "same" / "gate.md").read_text().upper()


@pytest.mark.slow
def test_base_without_adapter_fails(tmp_path):
    rc = _gate(["--model", "tiny-openflamingo"], tmp_path / "base")
    assert rc == 1
    assert "<failure" in (tmp_path / "base" / "gate.xml").read_text()


def test_run_gate_script_is_the_documented_entry_point():
    text = (CI / "run_gate.sh").read_text()
    assert "gate --baseline" in text and "ci/mmgpt-eval.toml" in text and "--junit" in text
    assert "ci/mmgpt-baseline" in text and "ci/gate.toml" in text
    wf = (CI / "github-actions.yml").read_text()
    # the workflow lives in the user's training repository: nothing of this source tree
    assert "ci/run_gate.sh" in wf and "examples/" not in wf.split("steps:", 1)[1]
    assert "git+https://github.com/<org>/mmgpt-eval" in wf and "-e ." not in wf and "-c constraints.txt" not in wf
    assert "pip install --no-deps open-flamingo==2.0.1" in wf
    r = json.loads((CI / "baseline" / "results.json").read_text())
    assert set(r["tasks"]) == {"easyvqa", "counting", "dialog"}
    assert r["run"]["limit"] == 300


@pytest.mark.slow
def test_reproduce_pipeline_smoke(tmp_path):
    """The whole `make reproduce` pipeline (three trainings, three evaluations, the table) in a few steps."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "mmgpt_eval_dev.reproduce", "--smoke", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["table"]) == {"base", "mmgpt", "ablation"}
    assert "Embedded tiny reproduction" in r.stdout
    for stage in ("tiny-base", "tiny-mmgpt", "tiny-ablation"):
        assert (tmp_path / stage / "metrics.jsonl").exists()


def test_reproduce_repeatability_section():
    """Two reproductions compared column by column; the RESULTS.md section says whether +-1 point holds."""
    from mmgpt_eval_dev.reproduce import NUMERIC, render_markdown, repeatability

    def table(shift):
        row = {k: 50.0 + shift for k in NUMERIC}
        row.update(easyvqa_n=9673, easyvqa_by_type={"yes/no": 1.0, "shape": 2.0, "color": 3.0})
        return {
            "table": {m: dict(row) for m in ("base", "mmgpt", "ablation")},
            "paired": {},
            "targets": {
                "easyvqa_accuracy_at_least_90": False,
                "baseline_clearly_lower": False,
                "open_median_length_ratio_vs_ablation": 1.0,
                "open_median_length_at_least_2x_ablation": False,
                "collapse_rate_lower_than_ablation": False,
                "easyvqa_within_2_points_of_ablation": True,
            },
        }

    meta = {"machine": "m", "wall_min": 40.0, "date": "d", "git": "g", "command": "make reproduce"}
    first = table(0.0)
    second = table(0.4)
    second["table"]["mmgpt"]["easyvqa_accuracy"] = 51.5
    second["meta"] = dict(meta, command="python -m mmgpt_eval_dev.reproduce --repeat-of x")
    rep = repeatability(first, second)
    assert rep["max_abs_diff"]["easyvqa_accuracy"] == pytest.approx(1.5)
    assert rep["max_percentage_point_diff"] == pytest.approx(1.5)
    first["repeatability"] = rep
    md = render_markdown(first, meta)
    assert "differs from the table above by at most 1.50 percentage points" in md and "NOT within +-1 point" in md
    second["table"]["mmgpt"]["easyvqa_accuracy"] = 50.4
    first["repeatability"] = repeatability(first, second)
    assert "(within +-1 point)" in render_markdown(first, meta)


def test_reproduce_command_line_quotes_what_was_run():
    """RESULTS.md quotes a command that runs the same thing again, output folder included when not the default."""
    import argparse

    from mmgpt_eval_dev.reproduce import DEFAULT_OUTPUT_DIR, command_line

    def ns(**kw):
        base = dict(output_dir=str(DEFAULT_OUTPUT_DIR), repeat_of=None, skip_training=False)
        return argparse.Namespace(**{**base, **kw})

    assert command_line(ns()) == "make reproduce"
    assert command_line(ns(repeat_of="runs/a")) == "python -m mmgpt_eval_dev.reproduce --repeat-of runs/a"
    assert command_line(ns(output_dir="runs/b", repeat_of="runs/a")) == (
        "python -m mmgpt_eval_dev.reproduce --output-dir runs/b --repeat-of runs/a"
    )
    assert command_line(ns(output_dir="runs/b", skip_training=True)).startswith(
        "python -m mmgpt_eval_dev.reproduce --output-dir runs/b --skip-training"
    )
