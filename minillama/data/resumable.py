"""Resumable downloads for large corpora: an interrupted 2 GB download continues where it stopped.

The bytes go to ``DEST.part``; a later call asks the server for the rest with an HTTP ``Range: bytes=N-`` header
and appends. A server that answers ``206 Partial Content`` continues the file; one that ignores ranges (``200``)
sends everything again and the partial file is restarted. Only a complete file, of the announced length and, when
known, of the expected size and SHA-256, is renamed to ``DEST``; a checksum failure deletes the partial file, since
its bytes cannot be trusted for the next attempt either.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from minillama.data.download import CHUNK_BYTES, ChecksumError, verify


def _total_from_content_range(header: str | None) -> int | None:
    """``"bytes 100-199/1000"`` or ``"bytes */1000"`` -> 1000 (``None`` when absent or unknown, ``/*``)."""
    match = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", header or "")
    return int(match.group(1)) if match else None


def download_resumable(url: str, dest: str | Path, sha256: str | None = None, size: int | None = None,
                       timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, continuing a previous partial download (``dest.part``) if there is one.

    Raises ``OSError`` when the connection drops before the end (call again to resume), :class:`ChecksumError` on a
    wrong size or SHA-256, ``urllib.error.URLError`` when the server cannot be reached.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:  # not a prefix of the file we want
        part.unlink()
        offset = 0
    headers = {"User-Agent": "minillama"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416 Range Not Satisfiable: the partial file already holds every byte
            raise
        total = _total_from_content_range(error.headers.get("Content-Range"))
        if total is None or total != offset:
            part.unlink()
            raise OSError(f"the server refused to resume {url} at byte {offset:,}; the partial file was removed, "
                          f"call again to restart") from error
    else:
        with response:
            if response.status == 206:
                total = _total_from_content_range(response.headers.get("Content-Range"))
                mode = "ab"
            else:  # 200: the server ignored the range and sends the whole file
                announced = response.headers.get("Content-Length")
                total = int(announced) if announced is not None else None
                offset, mode = 0, "wb"
            with open(part, mode) as out:
                try:
                    for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                        out.write(chunk)
                except http.client.IncompleteRead as error:  # keep what arrived; the next call resumes after it
                    out.write(error.partial)
                out.flush()
                os.fsync(out.fileno())
    received = part.stat().st_size
    if total is not None and received != total:
        raise OSError(f"download of {url} stopped at {received:,} of {total:,} bytes; call again to resume")
    try:
        verify(part, sha256, size)
    except ChecksumError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest
