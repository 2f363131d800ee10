"""Verified, atomic downloads.

The file is streamed to a temporary name beside its destination, its size and SHA-256 are checked, and only then
is it renamed into place (``os.replace`` is atomic on POSIX and Windows). A dropped connection, a truncated body or
a wrong checksum therefore never leaves a file under the final name, and the next call simply tries again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

CHUNK_BYTES = 1 << 20


class ChecksumError(ValueError):
    """A downloaded or mirrored file does not have the expected size or SHA-256."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large corpora need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, sha256: str | None, size: int | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the expected size and SHA-256 (``None`` skips a check)."""
    if size is not None and path.stat().st_size != size:
        raise ChecksumError(f"{path} has {path.stat().st_size:,} bytes, expected {size:,}")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256:
            raise ChecksumError(f"{path} has SHA-256 {actual}, expected {sha256}")


def download(url: str, dest: Path, sha256: str | None = None, size: int | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying the length the server announced, ``size`` and ``sha256``.

    Raises ``urllib.error.URLError`` when the server cannot be reached, :class:`ChecksumError` on a wrong size or
    checksum, and ``IOError`` on a truncated body; in every failure case ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "minillama"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                announced = response.headers.get("Content-Length")
                received = 0
                try:
                    for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                        out.write(chunk)
                        received += len(chunk)
                except http.client.IncompleteRead as error:
                    received += len(error.partial)
                if announced is not None and received != int(announced):
                    raise OSError(f"download of {url} was cut short: {received:,} of {int(announced):,} bytes")
            out.flush()
            os.fsync(out.fileno())
        verify(tmp, sha256, size)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
