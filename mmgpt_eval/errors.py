"""User-facing errors.

Anything the user can fix (a bad file, a bad flag, missing data) raises :class:`UserError`.
The CLI prints it as one line and exits with code 2, without a traceback.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with the user's input. ``str(err)`` is the one-line message."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{os.fspath(path)}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line
