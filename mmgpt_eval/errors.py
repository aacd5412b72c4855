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


# open-flamingo 2.0.1 is not a declared dependency (its metadata pins torch==2.0.1): installed on its own
OPEN_FLAMINGO_INSTALL = "pip install --no-deps open-flamingo==2.0.1"
# declared dependencies of mmgpt-eval whose absence shows only when their code runs (open-flamingo's
# runtime needs; the judge's OpenAI client): module -> what pip installs
_DECLARED = {
    "einops": "einops",
    "einops_exts": "einops-exts",
    "open_clip": "open_clip_torch",
    "transformers": "transformers",
    "openai": "openai",  # the client of OpenAI-compatible judge endpoints
}


def missing_package_error(err: ModuleNotFoundError) -> UserError | None:
    """The one-line error, with the command that fixes it, for a package that the model code (or
    OpenFlamingo's OK-VQA post-processing, or a judge) needs and the environment lacks; None for any
    other module."""
    top = (err.name or "").split(".")[0]
    if top == "open_flamingo":
        return UserError(
            f"the model code needs open-flamingo 2.0.1, which is not installed; run: {OPEN_FLAMINGO_INSTALL}"
        )
    if top in _DECLARED:
        return UserError(
            f"mmgpt-eval needs the package {_DECLARED[top]} (one of its dependencies), which is not "
            f"installed; run: pip install {_DECLARED[top]} (or reinstall mmgpt-eval with its dependencies)"
        )
    return None
