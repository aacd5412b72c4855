"""baselines/: every published row names its source and protocol, and the numbers are well formed."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mmgpt_eval.model.spec import list_presets

ROOT = Path(__file__).resolve().parents[1]


def test_published_rows():
    rows = tomllib.loads((ROOT / "baselines" / "openflamingo.toml").read_text())["row"]
    assert len(rows) >= 4
    presets = set(list_presets())
    for r in rows:
        assert {"model", "task", "metric", "scale", "shots", "values", "protocol", "source", "verified"} <= set(r)
        assert len(r["shots"]) == len(r["values"]) and r["verified"] is True
        assert r["preset"] in presets and r["task"] in ("coco", "vqav2")
    v1_coco = next(r for r in rows if r["preset"] == "mmgpt-9b-v0" and r["task"] == "coco")
    assert v1_coco["values"] == [65.52, 74.28, 79.26, 81.84, 84.52]
