"""minillama.data: named corpora through the mirror, the cache and a real HTTP download on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from minillama.data import CORPORA, ChecksumError, Corpus, corpus_path, download, load_text
from minillama.data.corpora import DOCUMENT_CORPORA

BODY = ("To be, or not to be, that is the question:\n" * 500).encode()
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /good (the body), /truncated (announces the full length, sends half), /wrong (other bytes)."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/good":
            self._send(BODY, len(BODY))
        elif self.path == "/truncated":
            self._send(BODY[: len(BODY) // 2], len(BODY))
        elif self.path == "/wrong":
            other = BODY.replace(b"question", b"QUESTION")
            self._send(other, len(other))
        else:
            self.send_error(404)

    def _send(self, payload: bytes, announced: int):
        self.send_response(200)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty cache, no mirror, network allowed."""
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILLAMA_DATA_MIRROR", raising=False)
    monkeypatch.delenv("MINILLAMA_OFFLINE", raising=False)
    return tmp_path


def _corpus(url: str) -> Corpus:
    return Corpus(name="hamlet", url=url, filename="hamlet.txt", sha256=BODY_SHA, size=len(BODY))


def test_download_verifies_and_caches(server, isolated):
    path = corpus_path(_corpus(f"{server}/good"))
    assert path == isolated / "cache" / "hamlet.txt"
    assert path.read_bytes() == BODY
    # A second call is served from the cache: a dead URL no longer matters.
    assert corpus_path(_corpus(f"{server}/missing")) == path


def test_truncated_download_leaves_nothing_behind(server, isolated):
    with pytest.raises(OSError, match="cut short"):
        corpus_path(_corpus(f"{server}/truncated"))
    assert list((isolated / "cache").iterdir()) == []


def test_checksum_mismatch_leaves_nothing_behind(server, isolated):
    with pytest.raises(ChecksumError, match="SHA-256"):
        corpus_path(_corpus(f"{server}/wrong"))
    assert list((isolated / "cache").iterdir()) == []


def test_failed_download_keeps_the_previous_file(server, tmp_path):
    dest = tmp_path / "hamlet.txt"
    dest.write_bytes(b"an earlier good copy")
    with pytest.raises(ChecksumError):
        download(f"{server}/wrong", dest, sha256=BODY_SHA)
    assert dest.read_bytes() == b"an earlier good copy"


def test_unreachable_server_names_the_offline_alternatives(isolated):
    # Port 9 (discard) on the loopback address refuses connections: a fast, local "no network".
    with pytest.raises(FileNotFoundError, match="MINILLAMA_DATA_MIRROR.*pydocs"):
        corpus_path(_corpus("http://127.0.0.1:9/hamlet.txt"))


def test_offline_flag_never_touches_the_network(isolated, monkeypatch):
    monkeypatch.setenv("MINILLAMA_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="MINILLAMA_OFFLINE"):
        load_text("tinyshakespeare")


def test_mirror_is_used_and_verified(isolated, monkeypatch):
    mirror = isolated / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("MINILLAMA_DATA_MIRROR", str(mirror))
    (mirror / "hamlet.txt").write_bytes(BODY)
    assert corpus_path(_corpus("http://127.0.0.1:9/unused")) == mirror / "hamlet.txt"
    (mirror / "hamlet.txt").write_bytes(BODY[:-1] + b"?")
    with pytest.raises(ChecksumError):
        corpus_path(_corpus("http://127.0.0.1:9/unused"))


def test_missing_mirror_folder_is_an_error(isolated, monkeypatch):
    monkeypatch.setenv("MINILLAMA_DATA_MIRROR", str(isolated / "no-such-folder"))
    with pytest.raises(FileNotFoundError, match="MINILLAMA_DATA_MIRROR"):
        load_text("tinyshakespeare")


SHARED_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_MIRROR / "tinyshakespeare.txt").is_file(), reason="no offline copy beside the repo")
def test_tinyshakespeare_from_the_shared_mirror(isolated, monkeypatch):
    monkeypatch.setenv("MINILLAMA_DATA_MIRROR", str(SHARED_MIRROR))
    text = load_text("tinyshakespeare")
    assert len(text.encode()) == CORPORA["tinyshakespeare"].size
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


def test_pydocs_is_offline_english(isolated, monkeypatch):
    monkeypatch.setenv("MINILLAMA_OFFLINE", "1")
    text = load_text("pydocs")
    assert len(text) > 200_000
    assert "The ``if`` statement" in text or "if_stmt" in text


def test_local_file_and_folder(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.md").write_text("first")
    (tmp_path / "skip.bin").write_bytes(b"\x00\xff")
    assert load_text(tmp_path / "b.txt") == "second"
    assert load_text(tmp_path) == "first\n\nsecond"


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a known corpus"):
        load_text("no-such-corpus-or-file")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not utf-8 text"):
        load_text(tmp_path / "latin1.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no text files"):
        load_text(tmp_path / "empty")


def _downloadable_files() -> list[Corpus]:
    return [*CORPORA.values(), *(f for corpus in DOCUMENT_CORPORA.values() for files in corpus.files.values()
                                 for f in files)]


def test_every_downloadable_file_is_pinned():
    """Each file has a byte size and a SHA-256 (64 lowercase hex digits), so no run trains on unverified bytes."""
    files = _downloadable_files()
    assert {f.filename for f in files} >= {"TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt",
                                            "fineweb-edu-sample-10BT-000_00000.parquet"}
    for f in files:
        assert isinstance(f.sha256, str) and len(f.sha256) == 64, f.name
        assert set(f.sha256) <= set("0123456789abcdef"), f.name
        assert isinstance(f.size, int) and f.size > 0, f.name
    assert len({f.sha256 for f in files}) == len(files)  # no value copied onto the wrong file


def test_a_wrong_copy_of_a_document_corpus_file_is_rejected(isolated, monkeypatch):
    """A mirrored TinyStories validation file with the right length but other bytes fails the SHA-256 check."""
    valid = DOCUMENT_CORPORA["tinystories"].files["val"][0]
    mirror = isolated / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("MINILLAMA_DATA_MIRROR", str(mirror))
    with open(mirror / valid.filename, "wb") as sparse:  # zeros, the expected size: only the hash can tell
        sparse.truncate(valid.size)
    with pytest.raises(ChecksumError, match="SHA-256"):
        corpus_path(valid)
    (mirror / valid.filename).write_bytes(b"Once upon a time")
    with pytest.raises(ChecksumError, match="bytes, expected"):
        corpus_path(valid)
