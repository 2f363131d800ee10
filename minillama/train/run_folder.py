"""The run folder's rules, as users know them from other tools: never reuse a folder by accident, one run at a time.

* An existing run folder (one with ``config.toml``, ``metrics.jsonl`` or ``checkpoints/``) is continued only with
  ``--resume``, started over only with ``--overwrite``, and otherwise refused with a message that offers both.
* A lock (``RUN/.lock``, an ``flock`` the operating system drops when the process dies, even by ``kill -9``) stops a
  second live run in the same folder instead of letting both write checkpoints and metrics.
* Nothing in the folder names the folder: a run moved or copied elsewhere resumes into itself.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from minillama.atomic import atomic_write
from minillama.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder rules still hold, the lock does not
    fcntl = None

LOCK_FILE = ".lock"
RUN_FILES = ("config.toml", "metrics.jsonl", "samples.txt", "checkpoints", "plots")


def holds_a_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already has a run's files in it."""
    return any((run_dir / name).exists() for name in RUN_FILES)


def claim_run_folder(run_dir: str | Path, *, resume_from: Path | None, overwrite: bool) -> RunLock:
    """Check the rules above for a run about to write into ``run_dir``, lock it, and return the lock.

    ``resume_from`` is the checkpoint being resumed (``None`` for a new run). Resuming writes into the folder that
    holds the checkpoint, or into a new folder; ``overwrite`` deletes an earlier run's files first.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} is a file, not a folder: choose a folder for the run")
    if resume_from is not None and overwrite:
        raise UserError("--resume continues a run and --overwrite deletes one: choose one of them")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the run folder {run_dir}: {error.strerror}") from error
    lock = RunLock(run_dir)
    resuming_here = resume_from is not None and _inside(resume_from, run_dir)
    if holds_a_run(run_dir) and not resuming_here:
        if not overwrite:
            lock.release()
            raise UserError(f"the run folder {run_dir} already holds a run: continue it with `--resume {run_dir}`, "
                            f"start it over with --overwrite (its checkpoints and metrics are deleted), or choose "
                            f"another --run-dir")
        for name in RUN_FILES:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return lock


def _inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


class RunLock:
    """An exclusive, non-blocking lock on ``run_dir/.lock``; released by :meth:`release` or by the process's end."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._file = open(self.path, "a+")
        if fcntl is None:
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            owner = self._file.read().strip() or "another process"
            self._file.close()
            raise UserError(f"the run folder {run_dir} is in use by a run still going ({owner}): wait for it to "
                            f"end, stop it (Ctrl-C saves its place), or choose another --run-dir") from None
        self._file.truncate(0)
        self._file.write(f"pid {os.getpid()} on {os.uname().nodename if hasattr(os, 'uname') else 'this host'}\n")
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing the file drops the flock


def write_run_config(run_dir: Path, config) -> None:
    """``RUN/config.toml``: the run's config without the fields that name places or one-off actions (``run_dir``,
    ``resume``, ``overwrite``), so the folder can move and ``--config RUN/config.toml`` repeats the run elsewhere.
    Written with :func:`~minillama.atomic.atomic_write`: a crash leaves the old file or the new one."""
    atomic_write(run_dir / "config.toml", config.replace(run_dir="", resume="", overwrite=False).to_toml())
