"""compare / gate commands on crafted runs; run --baseline; RICES demo order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fakeruns import make_run
from mmgpt_eval.cli import main
from mmgpt_eval.results import RunResults

POLICY = """
[defaults]
confidence = 0.95
min_samples = 50
[[rule]]
task = "easyvqa"
metric = "accuracy"
direction = "higher"
margin = 5.0
"""


def _binary(p: float, n: int = 400, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in (rng.random(n) < p)]


@pytest.fixture
def policy(tmp_path):
    f = tmp_path / "gate.toml"
    f.write_text(POLICY)
    return f


def _gate(tmp_path, base, cand, policy, *extra):
    return main(
        [
            "gate",
            "--baseline",
            str(base),
            "--candidate",
            str(cand),
            "--policy",
            str(policy),
            "--markdown",
            str(tmp_path / "gate.md"),
            "--junit",
            str(tmp_path / "gate.xml"),
            "--json",
            str(tmp_path / "gate.json"),
            *extra,
        ]
    )


def test_gate_exit_codes(tmp_path, policy, capsys):
    base_vals = _binary(0.8)
    base = make_run(tmp_path / "base", {"accuracy": base_vals})
    # clearly worse: 80% -> ~40%
    worse = make_run(tmp_path / "worse", {"accuracy": [v if i % 2 else 0.0 for i, v in enumerate(base_vals)]})
    assert _gate(tmp_path, base, worse, policy) == 1
    assert "regression" in (tmp_path / "gate.md").read_text().lower()
    import xml.etree.ElementTree as ET

    suite = ET.parse(tmp_path / "gate.xml").getroot()
    assert suite.iter("failure").__next__() is not None
    # equal: pass
    same = make_run(tmp_path / "same", {"accuracy": base_vals})
    assert _gate(tmp_path, base, same, policy) == 0
    # slightly worse (one sample in 400 = 0.25 points) inside the 5-point margin: pass
    slightly = list(base_vals)
    slightly[slightly.index(1.0)] = 0.0
    assert _gate(tmp_path, base, make_run(tmp_path / "slight", {"accuracy": slightly}), policy) == 0
    assert json.loads((tmp_path / "gate.json").read_text())["exit_code"] == 0


def test_gate_errors(tmp_path, policy, capsys):
    base = make_run(tmp_path / "base", {"accuracy": _binary(0.8)})
    other_ids = make_run(tmp_path / "ids", {"accuracy": _binary(0.8)}, ids=[f"x{i}" for i in range(400)])
    assert _gate(tmp_path, base, other_ids, policy) == 2
    assert "not evaluated on the same samples" in (tmp_path / "gate.md").read_text()
    no_metric = make_run(tmp_path / "nom", {"exact": _binary(0.8)})
    assert _gate(tmp_path, base, no_metric, policy) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\ndirection = "sideways"\n')
    assert _gate(tmp_path, base, base, bad) == 2
    assert "bad.toml" in capsys.readouterr().err
    assert main(["gate", "--baseline", str(tmp_path / "nope"), "--candidate", str(base), "--policy", str(policy)]) == 2


def test_compare_cli_and_trend(tmp_path, capsys):
    a = make_run(tmp_path / "a", {"accuracy": _binary(0.5, seed=1)}, step=100)
    b = make_run(tmp_path / "b", {"accuracy": _binary(0.7, seed=1)}, step=200)
    c = make_run(tmp_path / "c", {"accuracy": _binary(0.9, seed=1)}, step=300)
    assert main(["compare", str(a), str(b), str(c), "--json", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    assert "trend" in out and "300" in out
    data = json.loads((tmp_path / "cmp.json").read_text())["runs"]
    assert len(data) == 2
    first = data[0]["comparisons"][0]
    assert first["delta"] > 0 and first["ci_low"] > 0 and first["test"].startswith("mcnemar")
    other = make_run(tmp_path / "o", {"accuracy": _binary(0.5)}, ids=[f"z{i}" for i in range(400)])
    assert main(["compare", str(a), str(other)]) == 2
    assert "different samples" in capsys.readouterr().err


def test_run_with_baseline_model_and_run(tmp_path, monkeypatch):
    out = tmp_path / "cand"
    rc = main(
        [
            "-q",
            "run",
            "--model",
            "tiny",
            "--tasks",
            "easyvqa",
            "--limit",
            "12",
            "--output-dir",
            str(out),
            "--baseline",
            "tiny",
            "--no-progress",
            "--no-report",
            "--max-new-tokens",
            "3",
        ]
    )
    assert rc == 0
    r = RunResults.load(out)
    assert r.baseline["kind"] == "model" and (out / "baseline" / "results.json").exists()
    assert r.baseline["comparisons"][0]["delta"] == 0  # same model, same samples
    # an earlier run folder as the baseline, both given relative to the working directory (the report
    # must find the baseline from the candidate's folder); different settings are refused
    out2 = tmp_path / "cand2"
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "-q",
                "run",
                "--model",
                "tiny",
                "--tasks",
                "easyvqa",
                "--limit",
                "12",
                "--output-dir",
                "cand2",
                "--baseline",
                "cand/baseline",
                "--no-progress",
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )
    r2 = RunResults.load(out2)
    assert r2.baseline["kind"] == "run" and (out2 / "report.html").is_file()
    assert (out2 / r2.baseline["results"]).resolve() == (out / "baseline" / "results.json").resolve()
    assert (
        main(
            [
                "-q",
                "run",
                "--model",
                "tiny",
                "--tasks",
                "easyvqa",
                "--limit",
                "12",
                "--output-dir",
                str(tmp_path / "c3"),
                "--baseline",
                str(out / "baseline"),
                "--no-progress",
                "--no-report",
            ]
        )
        == 2
    )


def test_rices_most_similar_last(tiny_model):
    from mmgpt_eval.data.easyvqa import load_split
    from mmgpt_eval.rices import RICES

    seen, pool = set(), []
    for s in load_split("train")[:400]:  # one question per image: 10 different images
        if s.images[0].key not in seen and len(pool) < 10:
            seen.add(s.images[0].key)
            pool.append(s)
    r = RICES(tiny_model, pool)
    query = pool[3]
    demos = r.find(query, 3)
    assert demos[-1].images[0].key == query.images[0].key  # the identical image is the most similar: last
    assert len({d.images[0].key for d in demos}) == 3
