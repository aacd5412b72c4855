"""Shared test setup: everything offline, tiny models only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
V1 = FIXTURES / "mmgpt_v1"
V1_SPEC = FIXTURES / "mmgpt_v1.toml"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model():
    """A shared tiny preset model. Tests must not mutate it (load a fresh one for that)."""
    from mmgpt_eval.model.build import load_model
    from mmgpt_eval.model.spec import load_spec

    return load_model(load_spec("tiny", {"device": "cpu"}))
