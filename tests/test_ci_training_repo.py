"""The README section "Gate checkpoints in your training repository", followed verbatim in a throwaway
training repository: mmgpt-eval installed from a wheel into a fresh venv, `gate init` from the shipped
tiny model, the same adapter passes (exit 0), the base model without its adapter fails (exit 1)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- gate-in-training-repo -->"


def readme_commands() -> list[str]:
    """The commands of the README block after the marker (comment lines dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.S)
    assert m, "README lost its 'Gate checkpoints in your training repository' code block"
    return [line for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_block_has_the_four_steps():
    cmds = readme_commands()
    assert [c.split()[:2] for c in cmds] == [
        ["pip", "install"],
        ["mmgpt-eval", "gate"],
        ["mmgpt-eval", "run"],
        ["mmgpt-eval", "gate"],
    ]
    assert "git+https://" in cmds[0] and cmds[1].split()[2] == "init"


def _sh(cmd: str, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_training_repository_follows_readme(tmp_path):
    repo = tmp_path / "train-repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("# the user's training code\n")
    # a fresh venv on top of this one's packages (torch etc.), with mmgpt-eval from a wheel built from the tree
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("mmgpt_eval-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    # --system-site-packages sees the base interpreter's packages, not this venv's: add this venv's
    # site-packages as a plain path (its .pth files, the editable mmgpt-eval's among them, are not run)
    import sysconfig

    here = sysconfig.get_paths()["purelib"]
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "zz_parent_venv.pth").write_text(here + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        HF_HUB_OFFLINE="1",
        MODEL="tiny-openflamingo",
        BASELINE_CKPT="tiny-mmgpt",
        CANDIDATE_CKPT="tiny-mmgpt",
    )

    install, init, run, gate = readme_commands()
    # step 1 verbatim but for the source: the wheel (no network here); the README names both
    assert install.startswith("pip install ")
    r = _sh(f"pip install -q --no-deps --force-reinstall {shlex.quote(str(wheel))}", repo, env)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _sh("python -c 'import mmgpt_eval, sys; print(mmgpt_eval.__file__)'", tmp_path, env)
    assert r.returncode == 0 and Path(r.stdout.strip()).resolve().is_relative_to(venv.resolve()), r.stdout + r.stderr
    assert _sh("command -v mmgpt-eval", repo, env).stdout.strip() == str(venv / "bin" / "mmgpt-eval")

    # step 2 verbatim, but a small subset so the test stays quick (the only edit: --limit, --tasks)
    small_init = init.replace("--tasks easyvqa,counting", "--tasks easyvqa").replace("--limit 200", "--limit 60")
    assert small_init != init
    r = _sh(small_init, repo, env)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("ci/mmgpt-baseline/results.json", "ci/gate.toml", "ci/mmgpt-eval.toml"):
        assert (repo / f).is_file(), f
    assert 'inconclusive = "warn"' in (repo / "ci" / "gate.toml").read_text()
    r = _sh(small_init, repo, env)  # never overwrites silently
    assert r.returncode == 2 and "--force" in r.stderr

    # steps 3 and 4 verbatim: the same adapter passes
    r = _sh(f"{run} && {gate}", repo, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Gate: PASS" in (repo / "ci-out" / "gate.md").read_text()

    # the base model without its adapter (no --ckpt): a regression
    env["CANDIDATE_CKPT"] = ""
    r = _sh(f"rm -rf ci-out && {run} && {gate}", repo, env)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "<failure" in (repo / "ci-out" / "gate.xml").read_text()
