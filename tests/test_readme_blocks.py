"""The README's command blocks marked runnable, run verbatim.

A block is marked by the line ``<!-- runnable -->`` right before its ```` ```bash ```` fence
(``<!-- runnable exit=N -->`` when the block documents another exit status). Each block runs with
``bash -e -o pipefail`` in one shared temporary folder laid out as the repository root the README's
commands run from (a copy of ``examples/``, and ``mmgpt_eval/`` linked for the model-spec example's
relative paths), in README order (a block may read what an earlier
one wrote), with this venv's ``bin/`` first on PATH so ``mmgpt-eval``, ``lmms-eval`` and ``python``
resolve as after ``make venv`` and activating ``.venv``. The environment carries no offline or
MLflow switches the block does not set itself: what passes here runs as written.
"""

from __future__ import annotations

import importlib.util
import os
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# the blocks marked today; a marker that disappears (or stops matching a bash fence) fails the count
N_RUNNABLE = 6
MARKER = re.compile(r"^<!-- runnable(?: exit=(\d+))? -->$")
# what a block needs beyond the base install: (text in the block, importable module or program, why)
NEEDS = (
    ("lmms-eval ", "lmms_eval", "the optional extra mmgpt-eval[lmms]"),
    ("mlflow", "mlflow", "the optional extra mmgpt-eval[mlflow]"),
    ("coco", "java", "Java (COCO caption metrics)"),
)
# switches a block must set itself if it needs them (the test suite's conftest sets some globally)
NOT_INHERITED = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "MMGPT_EVAL_")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the fence in README.md
    section: str
    code: str
    exit_code: int


def runnable_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    section = ""
    for i, line in enumerate(lines):
        if line.startswith("## "):
            section = line[3:].strip()
        m = MARKER.match(line.strip())
        if not m:
            continue
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```bash":
            raise AssertionError(f"README.md:{i + 1}: a runnable marker must be followed by a ```bash fence")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"README.md:{i + 2}: the runnable block is not closed")
        code = "\n".join(lines[i + 2 : end]) + "\n"
        blocks.append(Block(i + 2, section, code, int(m.group(1) or 0)))
    return blocks


BLOCKS = runnable_blocks(README.read_text(encoding="utf-8"))


def test_runnable_markers_are_all_there():
    assert len(BLOCKS) >= N_RUNNABLE, (
        f"README.md has {len(BLOCKS)} blocks marked <!-- runnable -->, expected at least {N_RUNNABLE}: "
        + ", ".join(f"line {b.line} ({b.section})" for b in BLOCKS)
    )


def test_marker_parsing():
    text = "## A\n<!-- runnable -->\n```bash\necho a\n```\n## B\n<!-- runnable exit=1 -->\n```bash\nfalse\n```\n"
    assert runnable_blocks(text) == [Block(3, "A", "echo a\n", 0), Block(8, "B", "false\n", 1)]
    with pytest.raises(AssertionError, match="followed by a ```bash fence"):
        runnable_blocks("<!-- runnable -->\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="not closed"):
        runnable_blocks("<!-- runnable -->\n```bash\necho a\n")


def make_workdir(d: Path) -> Path:
    """``d`` laid out as the repository root the README's commands run from."""
    d.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "examples", d / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    # examples/model/tiny-local.toml names the embedded preset's files by relative path (read only)
    (d / "mmgpt_eval").symlink_to(ROOT / "mmgpt_eval", target_is_directory=True)
    return d


def missing_need(block: Block, have: Callable[[str], bool]) -> str | None:
    """Why ``block`` cannot run where ``have(name)`` says which tools/modules exist (None: it can)."""
    for text, need, why in NEEDS:
        if text in block.code and not have(need):
            return f"README.md:{block.line} needs {why}, not installed"
    return None


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``block`` verbatim and check what every block must show: its documented exit status, no
    traceback, no error logged."""
    r = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)  # lmms-eval colours its log even in a pipe
    where = f"README.md:{block.line} ({block.section})"
    assert r.returncode == block.exit_code, f"{where}: exit {r.returncode}, expected {block.exit_code}\n{log[-6000:]}"
    # lmms-eval logs a failed evaluation (with its traceback) and still exits 0
    assert "Traceback (most recent call last)" not in log, f"{where}: a traceback\n{log[-6000:]}"
    assert not re.search(r"\| ERROR +\|", log), f"{where}: an error logged\n{log[-6000:]}"
    return r


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One folder for all blocks, laid out as the repository root the README's commands run from."""
    return make_workdir(tmp_path_factory.mktemp("readme"))


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED) and not k.startswith("MLFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(workdir / "home")  # caches and tool settings start empty, as on a fresh machine
    env["HF_HOME"] = str(workdir / "home" / "hf")
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.mark.slow
@pytest.mark.parametrize(
    "block", BLOCKS, ids=[f"L{b.line}-{re.sub(r'[^a-z0-9]+', '-', b.section.lower())}" for b in BLOCKS]
)
def test_block_runs_verbatim(block: Block, workdir: Path):
    why = missing_need(
        block, lambda need: bool(shutil.which(need) if need == "java" else importlib.util.find_spec(need))
    )
    if why:
        pytest.skip(why)
    (workdir / "home").mkdir(exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_block(block, workdir, _env(workdir))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"README.md:{block.line} ({block.section}): {cpu:.1f} s CPU")  # shown with -s: wall time varies with load
