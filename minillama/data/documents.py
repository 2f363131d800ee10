"""A corpus as documents per split: what the tokenizer is trained on and what the token shards are made of.

``text_source(name_or_path)`` answers two questions for every kind of corpus:

* which splits it has: ``("train", "val")`` when it ships a validation file (TinyStories), ``("all",)`` otherwise
  (tinyshakespeare, pydocs, FineWeb-Edu, local files), in which case the trainer holds out the tail;
* its documents, streamed (a 2 GB TinyStories file is never read into memory at once). Documents are separated
  by the end-of-text token in the token stream, so the model learns where a story ends.

Its ``key`` names the corpus in cache paths: the corpus name for named corpora (their bytes are fixed by a
checksum), the file name plus a fingerprint of the content for local paths, so an edited file is re-tokenized.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from minillama.data.corpora import CORPORA, DOCUMENT_CORPORA, OFFLINE_CORPORA, TEXT_SUFFIXES, load_text


@dataclass(frozen=True)
class TextSource:
    """Documents of a corpus, split by split. ``documents(split)`` is a fresh iterator at every call."""

    key: str
    splits: tuple[str, ...]
    documents: Callable[[str], Iterator[str]]

    @property
    def has_validation_split(self) -> bool:
        return "val" in self.splits


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "corpus"


def _single(text_fn: Callable[[], str]) -> Callable[[str], Iterator[str]]:
    def documents(split: str) -> Iterator[str]:
        if split != "all":
            raise ValueError(f"this corpus has a single split 'all', not {split!r}")
        yield text_fn()

    return documents


def _path_fingerprint(path: Path, files: list[Path]) -> str:
    """Content hash for small inputs; (name, size, mtime) for large ones, where hashing would cost minutes."""
    digest = hashlib.sha256()
    total = sum(f.stat().st_size for f in files)
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        if total <= 256 << 20:
            digest.update(f.read_bytes())
        else:
            stat = f.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def text_source(name_or_path: str | Path) -> TextSource:
    """The :class:`TextSource` of a named corpus or of a local text file or folder (one document per file)."""
    name = str(name_or_path)
    if name in DOCUMENT_CORPORA:
        corpus = DOCUMENT_CORPORA[name]
        return TextSource(key=name, splits=corpus.splits, documents=corpus.documents)
    if name in CORPORA or name in OFFLINE_CORPORA:
        return TextSource(key=name, splits=("all",), documents=_single(lambda: load_text(name)))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"folder {path} holds no text files ({', '.join(TEXT_SUFFIXES)})")
    else:
        load_text(name_or_path)  # raises the error that lists the known corpora
        raise AssertionError("unreachable")

    def documents(split: str) -> Iterator[str]:
        if split != "all":
            raise ValueError(f"a local corpus has a single split 'all', not {split!r}")
        for f in files:
            yield load_text(f)

    return TextSource(key=f"{_slug(path.stem)}-{_path_fingerprint(path, files)}", splits=("all",),
                      documents=documents)
