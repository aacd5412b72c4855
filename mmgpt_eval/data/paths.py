"""Image paths named inside data files stay inside the data's own folder: a questions file cannot make
mmgpt-eval read (and a report embed) files elsewhere on disk. Paths the user passes on the command
line are taken as given; paths *inside* files are relative to a folder and may not leave it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UserError


def inside(base: str | os.PathLike, rel: str, where: Any, line: int | None = None, what: str = "image path") -> Path:
    """``base / rel``, refusing an absolute ``rel`` or one that leaves ``base`` (``..``, symlinks)."""
    if Path(rel).is_absolute():
        raise UserError(f"{what} {rel!r} is absolute; paths in a data file are relative to {base}", where, line)
    root = Path(base).resolve()
    p = (root / rel).resolve()
    if p != root and root not in p.parents:
        raise UserError(f"{what} {rel!r} leaves the folder {base}", where, line)
    return root / rel
