"""Shared test setup: everything offline, tiny models only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`make test` runs `-n auto`) each worker gets an equal share of the cores for torch's
# intra-op threads, and so do the subprocesses it starts: two workers with two threads each on two cores
# lose more to oversubscription than they gain.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    os.environ.setdefault("MKL_NUM_THREADS", str(_share))

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_sessionstart(session):
    """CI (MMGPT_EVAL_REQUIRE_JAVA=1) needs Java: the independent checks of the COCO caption metrics
    (pycocoevalcap's PTB tokenizer and METEOR) would otherwise be skipped while the run stays green."""
    import shutil

    if os.environ.get("MMGPT_EVAL_REQUIRE_JAVA") == "1" and shutil.which("java") is None:
        raise pytest.UsageError(
            "MMGPT_EVAL_REQUIRE_JAVA=1 but no `java` on PATH: the pycocoevalcap tests "
            "would be skipped; install a Java runtime (Debian: default-jre-headless)"
        )


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


@pytest.fixture
def no_load(monkeypatch):
    """Any model load fails the test: bad input that is knowable before loading must be refused first."""
    import mmgpt_eval.api
    import mmgpt_eval.model.build

    def refuse(*a, **k):
        raise AssertionError("a model was loaded for a bad-input case")

    monkeypatch.setattr(mmgpt_eval.api, "load", refuse)
    monkeypatch.setattr(mmgpt_eval.model.build, "build_base", refuse)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (timing-sensitive or long CPU loops on a shared 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
