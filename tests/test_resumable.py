"""Resumable downloads against a real HTTP server on 127.0.0.1 that drops connections and honours ranges."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from minillama.data import ChecksumError, Corpus, corpus_path, download_resumable

BODY = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/flaky``: the first request is cut after 30,000 bytes, later ones honour ``Range``.
    ``/norange``: always the whole body with 200. Every request's Range header is recorded."""

    requests: list[tuple[str, str | None]] = []
    served_flaky = 0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        range_header = self.headers.get("Range")
        type(self).requests.append((self.path, range_header))
        if self.path == "/norange":
            return self._send(200, BODY, {"Content-Length": str(len(BODY))})
        if self.path != "/flaky":
            return self.send_error(404)
        type(self).served_flaky += 1
        start = int(range_header.removeprefix("bytes=").rstrip("-")) if range_header else 0
        if start >= len(BODY):
            return self._send(416, b"", {"Content-Range": f"bytes */{len(BODY)}", "Content-Length": "0"})
        if type(self).served_flaky == 1:  # announce everything, send 30,000 bytes, hang up
            return self._send(200, BODY[:30_000], {"Content-Length": str(len(BODY))})
        part = BODY[start:]
        status = 206 if range_header else 200
        headers = {"Content-Length": str(len(part))}
        if range_header:
            headers["Content-Range"] = f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"
        self._send(status, part, headers)

    def _send(self, status, payload, headers):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.requests, _Handler.served_flaky = [], 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_an_interrupted_download_resumes_from_where_it_stopped(server, tmp_path):
    dest = tmp_path / "big.txt"
    with pytest.raises(OSError, match="30,000 of 102,400 bytes; call again to resume"):
        download_resumable(f"{server}/flaky", dest, sha256=SHA)
    assert not dest.exists() and (tmp_path / "big.txt.part").stat().st_size == 30_000
    assert download_resumable(f"{server}/flaky", dest, sha256=SHA) == dest
    assert dest.read_bytes() == BODY and not (tmp_path / "big.txt.part").exists()
    assert _Handler.requests[-1] == ("/flaky", "bytes=30000-")  # only the rest was asked for


def test_a_server_without_ranges_restarts_the_file(server, tmp_path):
    (tmp_path / "big.txt.part").write_bytes(b"stale bytes from some other attempt")
    dest = download_resumable(f"{server}/norange", tmp_path / "big.txt", sha256=SHA, size=len(BODY))
    assert dest.read_bytes() == BODY


def test_a_complete_partial_file_is_just_verified(server, tmp_path):
    (tmp_path / "big.txt.part").write_bytes(BODY)
    assert download_resumable(f"{server}/flaky", tmp_path / "big.txt", sha256=SHA).read_bytes() == BODY


def test_a_wrong_checksum_discards_the_partial_file(server, tmp_path):
    with pytest.raises(ChecksumError):
        download_resumable(f"{server}/norange", tmp_path / "big.txt", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_resumable_corpora_use_it(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILLAMA_DATA_MIRROR", raising=False)
    monkeypatch.delenv("MINILLAMA_OFFLINE", raising=False)
    corpus = Corpus(name="big", url=f"{server}/flaky", filename="big.txt", sha256=None, size=None, resumable=True)
    with pytest.raises(OSError, match="call again to resume"):
        corpus_path(corpus)
    path = corpus_path(corpus)  # the second call picks up the partial file
    assert path.read_bytes() == BODY
