"""The README section "Gate checkpoints in your training repository", followed verbatim in a throwaway
training repository: mmgpt-eval installed from a wheel into a fresh venv that borrows nothing from the
environment running the tests, `gate init` from the shipped tiny model, the same adapter passes (exit 0),
the base model without its adapter fails (exit 1); before the open-flamingo line, `gate init` stops with
the one-line error naming it (exit 2).

The substitutions, all documented under the block: this checkout's constraints.txt and a wheel built from
it instead of the two URLs, ``--no-compile`` (pip writes no bytecode: the same files otherwise) and the
subset ``--tasks easyvqa --limit 60``. One venv serves the whole module (installing torch copies ~6 GB
from the local wheels: about a minute on an idle machine), and is deleted at the end (in the background).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- gate-in-training-repo -->"
GIT_SPEC = '"mmgpt-eval @ git+https://github.com/<org>/mmgpt-eval"'
OPEN_FLAMINGO_LINE = "pip install --no-deps open-flamingo==2.0.1"


def readme_commands() -> list[str]:
    """The commands of the README block after the marker (comment lines dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.S)
    assert m, "README lost its 'Gate checkpoints in your training repository' code block"
    return [line for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_block_has_the_install_and_four_steps():
    cmds = readme_commands()
    assert [c.split("=")[0] if "=" in c.split()[0] else c.split()[:2] for c in cmds] == [
        "CONSTRAINTS",
        ["pip", "install"],
        ["pip", "install"],
        ["mmgpt-eval", "gate"],
        ["mmgpt-eval", "run"],
        ["mmgpt-eval", "gate"],
    ]
    assert cmds[0].endswith("/constraints.txt") and cmds[0].startswith("CONSTRAINTS=https://")
    assert cmds[1] == f'pip install -c "$CONSTRAINTS" {GIT_SPEC}'
    assert cmds[2] == OPEN_FLAMINGO_LINE
    assert cmds[3].split()[2] == "init"


def _sh(cmd: str, cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class TrainingRepo:
    """The fresh venv and the throwaway training repository, with what setting them up gave."""

    root: Path
    venv: Path
    repo: Path
    env: dict[str, str]
    install: list[str]  # the README's commands as run (after the substitutions)
    init: str
    run: str
    gate: str
    missing_open_flamingo: subprocess.CompletedProcess
    left_by_missing: list[str]  # files under ci/ after that failed command
    init_stdout: str
    timings: dict[str, float] = field(default_factory=dict)

    def sh(self, cmd: str) -> subprocess.CompletedProcess:
        return _sh(cmd, self.repo, self.env)


@pytest.fixture(scope="module")
def training_repo():
    root = Path(tempfile.mkdtemp(prefix="mmgpt-training-repo-"))
    try:
        yield _set_up(root)
    finally:
        # ~6 GB: never left behind; deleted by a process of its own, as deleting takes a minute or two
        # on a busy disk and nothing waits for it
        subprocess.Popen(["rm", "-rf", str(root)], start_new_session=True)


def _set_up(root: Path) -> TrainingRepo:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("mmgpt_eval-*.whl")
    timings["wheel"] = time.perf_counter() - t

    repo = root / "train-repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("# the user's training code\n")

    t = time.perf_counter()
    venv = root / "venv"
    # the interpreter this venv is made from: the base Python, never the tests' venv (no site-packages of it)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    timings["venv"] = time.perf_counter() - t
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        HF_HUB_OFFLINE="1",
        MODEL="tiny-openflamingo",
        BASELINE_CKPT="tiny-mmgpt",
        CANDIDATE_CKPT="tiny-mmgpt",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )

    constraints, install, install_of, init, run, gate = readme_commands()
    # the documented substitutions: local constraints and wheel for the URLs, no bytecode, a smaller subset
    constraints = f"CONSTRAINTS={shlex.quote(str(ROOT / 'constraints.txt'))}"
    install = install.replace(GIT_SPEC, shlex.quote(str(wheel))).replace("pip install ", "pip install --no-compile ")
    install_of = install_of.replace("pip install ", "pip install --no-compile ")
    small_init = init.replace("--tasks easyvqa,counting", "--tasks easyvqa").replace("--limit 200", "--limit 60")
    assert small_init != init and str(wheel) in install

    t = time.perf_counter()
    r = _sh(f"{constraints} && {install}", repo, env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    timings["pip install mmgpt-eval"] = time.perf_counter() - t

    # step 2 without the open-flamingo line: one line naming the command, exit 2, nothing written
    t = time.perf_counter()
    missing = _sh(small_init, repo, env)
    timings["gate init without open-flamingo"] = time.perf_counter() - t
    left = (
        sorted(str(p.relative_to(repo)) for p in (repo / "ci").rglob("*") if p.is_file())
        if (repo / "ci").exists()
        else []
    )

    t = time.perf_counter()
    r = _sh(install_of, repo, env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    timings["pip install open-flamingo"] = time.perf_counter() - t

    t = time.perf_counter()
    init_result = _sh(small_init, repo, env)
    assert init_result.returncode == 0, init_result.stdout[-3000:] + init_result.stderr[-3000:]
    timings["gate init"] = time.perf_counter() - t
    print("set-up timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), file=sys.stderr)
    return TrainingRepo(
        root,
        venv,
        repo,
        env,
        [constraints, install, install_of],
        small_init,
        run,
        gate,
        missing,
        left,
        init_result.stdout,
        timings,
    )


@pytest.mark.slow
def test_venv_borrows_nothing(training_repo):
    """The venv holds only what the README's install gave: no path of the tests' environment or of this
    checkout on its sys.path, and mmgpt-eval, torch and open_flamingo come from inside it."""
    tr = training_repo
    code = (  # where each package would be imported from (found, not imported: torch takes long to import)
        "import importlib.util, json, sys; "
        "print(json.dumps({'path': sys.path, 'files': [importlib.util.find_spec(m).origin "
        "for m in ('mmgpt_eval', 'mmgpt_eval_tasks', 'torch', 'transformers', 'open_flamingo', 'open_clip')]}))"
    )
    r = _sh(f"python -c {shlex.quote(code)}", tr.root, tr.env)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    # this process's environment: its venv, this checkout and every site-packages it reads (the worktree
    # venvs of development read another venv's through a .pth)
    ours = {Path(sys.prefix).resolve(), ROOT.resolve()} | {Path(p).resolve() for p in sys.path if "site-packages" in p}
    for p in got["path"]:
        if p:
            rp = Path(p).resolve()
            assert not any(rp == o or rp.is_relative_to(o) for o in ours), (
                f"{p} is borrowed from the tests' environment"
            )
    for f in got["files"]:
        assert Path(f).resolve().is_relative_to(tr.venv.resolve()), f
    for pth in tr.venv.glob("lib/python*/site-packages/*.pth"):  # no .pth pointing outside the venv
        assert not any(str(o) in pth.read_text() for o in ours), pth
    assert tr.sh("command -v mmgpt-eval").stdout.strip() == str(tr.venv / "bin" / "mmgpt-eval")


@pytest.mark.slow
def test_without_open_flamingo_one_line_error(training_repo):
    r = training_repo.missing_open_flamingo
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and OPEN_FLAMINGO_LINE in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "bug" not in r.stderr
    assert training_repo.left_by_missing == []  # nothing half-written


@pytest.mark.slow
def test_gate_init_wrote_a_portable_baseline(training_repo):
    tr = training_repo
    repo = tr.repo
    for f in ("ci/mmgpt-baseline/results.json", "ci/gate.toml", "ci/mmgpt-eval.toml"):
        assert (repo / f).is_file(), f
    assert 'inconclusive = "warn"' in (repo / "ci" / "gate.toml").read_text()
    text = (repo / "ci" / "mmgpt-baseline" / "results.json").read_text()
    assert str(tr.root) not in text and str(ROOT) not in text

    def strings(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v

    data = json.loads(text)
    assert not [s for s in strings(data) if os.path.isabs(s) and len(s) > 1]
    # the relative paths name the real files, from the baseline's folder
    spec = data["model"]["model_spec"]
    assert (repo / "ci" / "mmgpt-baseline" / spec["lm"]).is_dir(), spec["lm"]
    assert (repo / "ci" / "mmgpt-baseline" / data["model"]["checkpoint"]["path"]).is_dir()
    # the printed next steps install the same way as the README
    assert OPEN_FLAMINGO_LINE in tr.init_stdout and 'pip install -c CONSTRAINTS "mmgpt-eval @ git+' in tr.init_stdout
    r = tr.sh(tr.init)  # never overwrites silently
    assert r.returncode == 2 and "--force" in r.stderr
    r = tr.sh("mmgpt-eval report ci/mmgpt-baseline -o baseline-report.html")  # the stored baseline still reads
    assert r.returncode == 0 and (repo / "baseline-report.html").is_file(), r.stderr[-2000:]


@pytest.mark.slow
def test_same_adapter_passes_and_base_fails(training_repo):
    tr = training_repo
    repo = tr.repo
    r = tr.sh(f"rm -rf ci-out && {tr.run} && {tr.gate}")  # steps 3 and 4 verbatim
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Gate: PASS" in (repo / "ci-out" / "gate.md").read_text()

    # the base model without its adapter (no --ckpt): a regression; ci-out still holds the first
    # candidate's run, which step 3's --overwrite replaces
    env = {**tr.env, "CANDIDATE_CKPT": ""}
    r = _sh(f"{tr.run} && {tr.gate}", repo, env)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "<failure" in (repo / "ci-out" / "gate.xml").read_text()


def test_portable_paths_relative_to_the_baseline_folder(tmp_path):
    from mmgpt_eval.cli.gate import portable_paths

    folder = tmp_path / "repo" / "ci" / "mmgpt-baseline"
    model = {
        "model_spec": {"lm": str(tmp_path / "repo" / "models" / "lm"), "name": "tiny", "precision": "fp32"},
        "checkpoint": {"path": str(tmp_path / "repo" / "runs" / "final"), "sha256": "ab", "lora": {"r": 16}},
        "load_reports": [{"source": str(tmp_path / "elsewhere" / "x.pt"), "missing": []}],
        "spec_name": "/",  # not a path worth rewriting
    }
    got = portable_paths(model, folder)
    assert got["model_spec"] == {"lm": "../../models/lm", "name": "tiny", "precision": "fp32"}
    assert got["checkpoint"] == {"path": "../../runs/final", "sha256": "ab", "lora": {"r": 16}}
    assert got["load_reports"] == [{"source": "../../../elsewhere/x.pt", "missing": []}]
    assert got["spec_name"] == "/"
    assert (folder / got["checkpoint"]["path"]).resolve() == (tmp_path / "repo" / "runs" / "final").resolve()


def _venv_has(tr: TrainingRepo, need: str) -> bool:
    """Is ``need`` (java, or an importable module) there for the fresh venv?"""
    if need == "java":
        return shutil.which("java", path=tr.env["PATH"]) is not None
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({need!r}) is None)"
    return _sh(f"python -c {shlex.quote(code)}", tr.root, tr.env).returncode == 0


@pytest.mark.slow
def test_the_readme_blocks_run_verbatim_in_the_fresh_venv(training_repo, tmp_path):
    """Every README block marked runnable that the bare install can run (the optional extras -- lmms-eval,
    MLflow -- are not in this venv; their blocks run in tests/test_readme_blocks.py), verbatim, in README
    order, in the venv the README's install made (nothing borrowed): the Usage examples, a model spec,
    and judging through the local judge endpoint of examples/ (the judge's OpenAI client comes with
    mmgpt-eval itself)."""
    from test_readme_blocks import BLOCKS, make_workdir, missing_need, run_block

    tr = training_repo
    work = make_workdir(tmp_path / "readme")
    env = {**tr.env, "HOME": str(work / "home")}
    env.pop("HF_HUB_OFFLINE", None)  # as in test_readme_blocks: a block sets the switches it needs
    (work / "home").mkdir()
    ran = []
    for block in BLOCKS:
        if missing_need(block, lambda need: _venv_has(tr, need)) is None:
            run_block(block, work, env)
            ran.append(block.section)
    assert "Judging open-ended answers" in ran and "Usage" in ran and len(ran) >= 4, ran
    assert (work / "judged" / "judge.json").is_file()
