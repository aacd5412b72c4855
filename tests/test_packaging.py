"""Packaging: every package folder is listed in pyproject.toml; easy-vqa's stray `test` package
cannot shadow anything of ours; the console script exists."""

from __future__ import annotations

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
