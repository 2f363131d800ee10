"""Named corpora and ``load_text``: one call from a name or a path to a Python string.

Resolution order for a named corpus: the offline mirror (``MINILLAMA_DATA_MIRROR``), then the cache, then the
network (verified download into the cache). Every copy, mirrored or downloaded, is checked against the corpus's
size and SHA-256, so the book's numbers are always computed on exactly the same bytes.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path

from minillama.data.download import download, verify
from minillama.data.paths import cache_dir, mirror_dir, offline

# Suffixes read when ``load_text`` is given a folder.
TEXT_SUFFIXES = (".txt", ".md", ".rst")


@dataclass(frozen=True)
class Corpus:
    """A downloadable text file with a fixed size and checksum."""

    name: str
    url: str
    filename: str  # name in the cache and in the mirror folder
    sha256: str
    size: int  # bytes
    description: str = ""


CORPORA: dict[str, Corpus] = {
    corpus.name: corpus
    for corpus in [
        Corpus(
            name="tinyshakespeare",
            url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            filename="tinyshakespeare.txt",
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            size=1_115_394,
            description="40,000 lines of Shakespeare's plays (Karpathy's char-rnn), 1.1 MB",
        ),
    ]
}

# Corpora that ship with Python itself and never need the network.
OFFLINE_CORPORA = {"pydocs": "the standard library's own documentation text (pydoc_data), about 0.5 MB of English"}


def pydocs_text() -> str:
    """English prose that every Python installation carries: the ``help()`` topics from ``pydoc_data``."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip() for key in sorted(topics))


def corpus_path(corpus: Corpus | str) -> Path:
    """Local path of a named corpus: mirror, then cache, then a verified download into the cache."""
    if isinstance(corpus, str):
        corpus = _named_corpus(corpus)
    mirror = mirror_dir()
    if mirror is not None and (mirror / corpus.filename).is_file():
        mirrored = mirror / corpus.filename
        verify(mirrored, corpus.sha256, corpus.size)
        return mirrored
    cached = cache_dir() / corpus.filename
    if cached.is_file() and cached.stat().st_size == corpus.size:
        return cached
    if offline():
        raise FileNotFoundError(_offline_message(corpus, "MINILLAMA_OFFLINE is set"))
    try:
        return download(corpus.url, cached, sha256=corpus.sha256, size=corpus.size)
    except urllib.error.URLError as error:
        raise FileNotFoundError(_offline_message(corpus, f"the download failed ({error.reason})")) from error


def load_text(name_or_path: str | Path, encoding: str = "utf-8") -> str:
    """The text of a named corpus (``"tinyshakespeare"``, ``"pydocs"``), a text file, or a folder of text files.

    A folder is read in sorted path order (so the result is reproducible), taking files ending in
    ``.txt``, ``.md`` or ``.rst`` and joining them with a blank line.
    """
    name = str(name_or_path)
    if name in OFFLINE_CORPORA:
        return pydocs_text()
    if name in CORPORA:
        return corpus_path(name).read_text(encoding=encoding)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _read(path, encoding)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"folder {path} holds no text files ({', '.join(TEXT_SUFFIXES)})")
        return "\n\n".join(_read(p, encoding) for p in files)
    known = ", ".join(sorted([*CORPORA, *OFFLINE_CORPORA]))
    raise FileNotFoundError(f"{name!r} is neither a known corpus ({known}) nor an existing file or folder")


def _named_corpus(name: str) -> Corpus:
    try:
        return CORPORA[name]
    except KeyError:
        known = ", ".join(sorted(CORPORA))
        raise KeyError(f"unknown corpus {name!r}; downloadable corpora are: {known}") from None


def _read(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not {encoding} text ({error.reason} at byte {error.start})") from error


def _offline_message(corpus: Corpus, why: str) -> str:
    return (
        f"cannot get corpus {corpus.name!r}: {why}. Offline alternatives: put {corpus.filename} in a folder and set "
        f"MINILLAMA_DATA_MIRROR to it, pass the path of a local text file or folder to load_text(), or use "
        f"load_text('pydocs') ({OFFLINE_CORPORA['pydocs']}). Source: {corpus.url}"
    )
