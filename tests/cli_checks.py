"""Test helpers for the command line's bad-input contract: one call of ``mmgpt-eval`` in-process that
must be refused with exit code 2, one ``mmgpt-eval: error: ...`` line on stderr, no traceback, and
nothing written under the working folder."""

from __future__ import annotations

from pathlib import Path

from mmgpt_eval.cli import main


def files_under(root: Path) -> set[str]:
    """Every path under ``root``, relative to it (what a refused command must leave unchanged)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_error_line(ws: Path, argv: list[str], capsys, monkeypatch, words: list[str], max_len: int | None = None) -> str:
    """Run ``mmgpt-eval -q ARGV`` in ``ws``; assert the contract above and that the line holds every
    one of ``words`` (and is shorter than ``max_len``); returns the line."""
    monkeypatch.chdir(ws)
    before = files_under(ws)
    capsys.readouterr()
    rc = main(["-q"] + argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err[-2000:])
    assert "Traceback" not in err + out
    assert len(lines) == 1, err
    assert lines[0].startswith("mmgpt-eval: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    if max_len is not None:
        assert len(lines[0]) < max_len, lines[0]
    assert files_under(ws) == before, f"written: {sorted(files_under(ws) - before)}"
    return lines[0]
