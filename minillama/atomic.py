"""``atomic_write``: a file appears whole or not at all, so that nothing a user saved is lost to a crash.

The data goes to a temporary file in the same folder, is flushed to disk (``fsync``), then renamed over the
destination (``os.replace`` is atomic on POSIX and Windows) and the folder entry is made durable too. A reader sees
the old file or the new one, never half of one. Every writer of tokenizers, shards' sidecars, weights, metrics
and checkpoints goes through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or file creation inside folder ``path`` durable (POSIX; a no-op on Windows)."""
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], object]) -> Path:
    """Write ``data`` (bytes, UTF-8 text, or a function that writes the file it is given) to ``path`` atomically.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "a.txt", "hello").read_text(), sorted(p.name for p in folder.iterdir())
    ('hello', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path
