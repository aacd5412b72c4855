"""Packaging: every package folder is listed in pyproject.toml; easy-vqa's stray `test` package
cannot shadow anything of ours; the console script exists."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_all_packages_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for pkg, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found == listed


def test_no_shadowing_by_easy_vqa_test_package():
    import mmgpt_eval
    import mmgpt_eval_tasks

    for mod in (mmgpt_eval, mmgpt_eval_tasks):
        assert Path(mod.__file__).resolve().is_relative_to(ROOT)
    # our test suite is not a package named `test`, and nothing of ours imports `test`
    assert not (ROOT / "test").exists()
    assert "test" not in sys.modules or "site-packages" in str(getattr(sys.modules["test"], "__file__", ""))
    for py in (ROOT / "mmgpt_eval").rglob("*.py"):
        text = py.read_text()
        assert "import test\n" not in text and "from test " not in text


def test_console_script():
    exe = Path(sys.executable).parent / "mmgpt-eval"
    assert exe.exists() or shutil.which("mmgpt-eval")


def test_a_wheel_shows_the_published_rows(tmp_path):
    """A wheel built from the tree, installed in an isolated venv (no repository beside it), finds the
    published OpenFlamingo numbers and the `bench` command's entry point and package."""
    import subprocess

    src = tmp_path / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in cfg["package-dir"].values():
        shutil.copytree(ROOT / folder, src / folder, ignore=junk)

    def run(*cmd: str, cwd: Path = tmp_path) -> str:
        r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
        return r.stdout

    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        str(tmp_path / "dist"),
        str(src),
    )
    (wheel,) = (tmp_path / "dist").glob("mmgpt_eval-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    py = str(venv / "bin" / "python")
    run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))
    check = (
        "import json, importlib.metadata as md, importlib.util, mmgpt_eval\n"
        "from mmgpt_eval.published import default_path, load_default\n"
        "pub = load_default()\n"
        "eps = {e.name: e.value for e in md.entry_points(group='mmgpt_eval.commands')}\n"
        "print(json.dumps({'package': mmgpt_eval.__file__, 'path': str(default_path()),\n"
        "                  'rows': None if pub is None else [r.id for r in pub.rows], 'commands': eps,\n"
        "                  'dev': importlib.util.find_spec('mmgpt_eval_dev.bench_command') is not None}))\n"
    )
    out = json.loads(run(py, "-I", "-c", check).strip().splitlines()[-1])
    assert Path(out["package"]).is_relative_to(venv) and Path(out["path"]).is_relative_to(venv), out
    assert out["rows"] is not None and len(out["rows"]) >= 7 and "v2-card-coco" in out["rows"], out
    assert out["commands"] == {"bench": "mmgpt_eval_dev.bench_command:register"} and out["dev"], out
