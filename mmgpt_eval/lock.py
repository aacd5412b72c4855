"""One run per output folder: an exclusive advisory lock on ``OUTDIR/.mmgpt-eval.lock`` for the whole run.

    with output_lock(outdir, command):   # what api.evaluate does, before anything is written
        ...

The lock is ``fcntl.flock`` (non-blocking) on the lock file, which records who holds it: pid, host,
start time and command (JSON). A second run on a locked folder fails at once with a one-line
:class:`~mmgpt_eval.errors.UserError` naming the holder (exit code 2). The kernel drops a flock when
its process dies, so a lock left by a killed run is free again: the next run takes it over and says
so ("taken over a stale lock") when the recorded pid is gone. On a clean exit the lock file is removed
(while still locked; an acquirer checks that the file it locked is still the one at the path, so two
runs can never both hold it). Under torchrun only rank 0 takes the lock (the other ranks write into
rank 0's folder only through their shard files, created after rank 0 holds it).

Right after taking the lock, :func:`remove_orphan_temps` deletes the hidden temporary files that
:func:`mmgpt_eval.io.atomic_writer` leaves behind when a process is killed mid-write
(``.<name>.<random>.tmp`` beside the target), in the folder and the sub-folders a run writes
(``samples/``, ``baseline/``, checkpoint-series folders and their ``samples/``): while we hold the
lock nobody else is writing there.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import UserError
from .io import is_atomic_temp

log = logging.getLogger("mmgpt_eval")

LOCK_NAME = ".mmgpt-eval.lock"
CLEANUP_DEPTH = 3  # OUTDIR, OUTDIR/samples + OUTDIR/<series or baseline>, OUTDIR/<...>/samples


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_info(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        info = json.loads(data.decode("utf-8")) if data.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h since 2025-01-01T00:00:00+00:00 (mmgpt-eval run ...)``, on one line."""
    if not info:
        return "an unknown process (the lock file records no holder yet)"
    cmd = " ".join(str(info.get("command", "?")).split())
    if len(cmd) > 300:
        cmd = cmd[:297] + "..."
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('started', '?')} ({cmd})"


class OutputLock:
    """The exclusive lock on one output folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, command: str | Sequence[str] | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        if command is None or (not isinstance(command, str) and not list(command)):
            command = sys.argv
        self.command = command if isinstance(command, str) else shlex.join(str(c) for c in command)
        self.fd: int | None = None
        self.created_folder = False

    def acquire(self) -> "OutputLock":
        if not self.folder.exists():
            try:
                self.folder.mkdir(parents=True)
                self.created_folder = True
            except FileExistsError:
                pass
            except OSError as e:
                raise UserError(f"cannot create the output folder ({e.strerror})", self.folder) from None
        if not self.folder.is_dir():
            raise UserError("the output folder is not a directory", self.folder)
        for _ in range(20):  # the file may be removed by a holder releasing it between open and flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as e:
                raise UserError(f"cannot create the lock file ({e.strerror})", self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                info = _read_info(fd)
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(
                        f"the output folder is in use by another mmgpt-eval run: {describe_holder(info)}; "
                        "wait for it to finish or choose another --output-dir",
                        self.folder,
                    ) from None
                raise UserError(f"cannot lock the output folder ({e.strerror})", self.path) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its holder had just removed: try again with the new one
                os.close(fd)
                continue
            self.fd = fd
            break
        else:
            raise UserError("could not take the lock (the lock file keeps changing)", self.path)
        old = _read_info(self.fd)
        if old:
            pid = old.get("pid")
            gone = isinstance(pid, int) and old.get("host") == socket.gethostname() and not _pid_alive(pid)
            log.warning(
                "%s: taken over a stale lock left by %s%s",
                self.folder,
                describe_holder(old),
                " (that process is gone)" if gone else " (it no longer holds the lock)",
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, (json.dumps(info) + "\n").encode("utf-8"))
        os.fsync(self.fd)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # still locked: nobody can take it between unlink and unlock
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
        if self.created_folder:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_orphan_temps(folder: str | os.PathLike, depth: int = CLEANUP_DEPTH) -> list[Path]:
    """Delete the temporary files of atomic writes cut short by a kill (see the module docstring);
    returns what was removed. Only call it while holding the folder's lock."""
    removed: list[Path] = []
    root = Path(folder)
    todo = [(root, 1)]
    while todo:
        d, level = todo.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if level < depth and not e.name.startswith("."):
                        todo.append((Path(e.path), level + 1))
                elif e.is_file(follow_symlinks=False) and is_atomic_temp(e.name):
                    os.unlink(e.path)
                    removed.append(Path(e.path))
            except OSError:
                continue
    if removed:
        log.warning(
            "%s: removed %d temporary file(s) left by an interrupted run: %s",
            root,
            len(removed),
            ", ".join(str(p.relative_to(root)) for p in removed[:5]) + (" ..." if len(removed) > 5 else ""),
        )
    return removed


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, command: str | Sequence[str] | None = None) -> Iterator[OutputLock | None]:
    """Hold the folder's lock for the block and clean up orphan temporaries first; a no-op on torchrun
    ranks other than 0."""
    from .distributed import env_world

    if env_world()[0] != 0:
        yield None
        return
    lock = OutputLock(folder, command).acquire()
    try:
        remove_orphan_temps(folder)
        yield lock
    finally:
        lock.release()
