"""Named corpora and ``load_text``: one call from a name or a path to a Python string.

Resolution order for a named corpus: the offline mirror (``MINILLAMA_DATA_MIRROR``), then the cache, then the
network (verified download into the cache). Every copy, mirrored or downloaded, is checked against the corpus's
size and SHA-256, so the book's numbers are always computed on exactly the same bytes.

Large corpora for training runs (:data:`DOCUMENT_CORPORA`: TinyStories, a FineWeb-Edu sample) are read as streams
of documents per split (see :mod:`minillama.data.documents`) and downloaded with resume
(:mod:`minillama.data.resumable`), since a multi-gigabyte download that restarts from zero after every dropped
connection may never finish.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minillama.data.download import ChecksumError, download, verify
from minillama.data.paths import cache_dir, mirror_dir, offline
from minillama.data.resumable import download_resumable

# Suffixes read when ``load_text`` is given a folder.
TEXT_SUFFIXES = (".txt", ".md", ".rst")


@dataclass(frozen=True)
class Corpus:
    """A downloadable file with a fixed size and checksum.

    ``sha256``/``size`` may be ``None`` for files whose checksum has not been verified by the maintainers (then
    only the length the server announces is checked); ``resumable`` downloads continue after an interruption.
    """

    name: str
    url: str
    filename: str  # name in the cache and in the mirror folder
    sha256: str | None
    size: int | None  # bytes
    description: str = ""
    resumable: bool = False


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

# --- corpora of documents, for training runs ---------------------------------------------------------------------

HF_DATASETS = "https://huggingface.co/datasets"
TINYSTORIES_SEPARATOR = "<|endoftext|>"  # between stories in the TinyStories text files


@dataclass(frozen=True)
class DocumentCorpus:
    """A corpus of many documents in one or more files per split.

    ``fmt`` says how documents are stored: ``"separated"`` (text files, documents separated by ``separator`` on a
    line of its own) or ``"parquet"`` (one document per row of the ``text`` column; needs ``pyarrow``).
    """

    name: str
    files: dict[str, tuple[Corpus, ...]]  # split ("train", "val" or "all") -> files
    fmt: str
    description: str = ""
    separator: str = TINYSTORIES_SEPARATOR

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    def documents(self, split: str) -> Iterator[str]:
        """The documents of ``split``, streamed file by file (downloaded on first use)."""
        if split not in self.files:
            raise ValueError(f"corpus {self.name!r} has splits {', '.join(self.files)}, not {split!r}")
        for corpus in self.files[split]:
            path = corpus_path(corpus)
            if self.fmt == "separated":
                yield from _separated_documents(path, self.separator)
            elif self.fmt == "parquet":
                yield from _parquet_documents(path)
            else:
                raise ValueError(f"unknown document format {self.fmt!r}")


def _separated_documents(path: Path, separator: str) -> Iterator[str]:
    """Documents of a text file in which ``separator`` lines separate documents (read line by line)."""
    lines: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip() == separator:
                if any(part.strip() for part in lines):
                    yield "".join(lines).strip("\n")
                lines = []
            else:
                lines.append(line)
    if any(part.strip() for part in lines):
        yield "".join(lines).strip("\n")


def _parquet_documents(path: Path) -> Iterator[str]:
    """The ``text`` column of a parquet file, one row group at a time."""
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError(
            f"reading {path.name} needs pyarrow: `pip install pyarrow` (or `pip install 'minillama[data]'`)"
        ) from error
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        yield from parquet.read_row_group(group, columns=["text"]).column("text").to_pylist()


# (size in bytes, SHA-256) of each file: the Git LFS object the Hugging Face hub serves for it (its ``oid sha256``),
# as published by many independent projects that downloaded and hashed these exact files. TinyStories: the hub's
# revision f54c09fd23315a6f9c86f9dc80f725de7d8f9c64; FineWeb-Edu: revision 87f09149ef4734204d70ed1d046ddc9ca3f2b8f9.
# If a dataset's ``main`` branch ever replaces a file, the download fails with a ChecksumError instead of silently
# training on different bytes.
TINYSTORIES_FILES: dict[str, tuple[int, str]] = {
    "train": (2_227_753_162, "6418d412de72888f52b5142c761ac21a582f7d1166f0bfbdb5f03ccfdec90443"),
    "valid": (22_502_601, "6874bae9a4c1a4e7edcf0e53b86c17817e9cf881fc75ff2368da457b80c0585d"),
}
FINEWEB_EDU_SHARDS: dict[int, tuple[int, str]] = {
    0: (2_152_819_114, "b1ba7b2ce4cb5ea6ef42dca40263eabb85f37700d01693a68e9b30a31d78e871"),
    1: (2_152_222_432, "3fcf2dc69cd52503986276d3d2d26a8c356d0f2ea28a0de4fdbda8cf87755693"),
}


def _tinystories(split: str) -> Corpus:
    filename = f"TinyStoriesV2-GPT4-{split}.txt"
    size, sha256 = TINYSTORIES_FILES[split]
    return Corpus(name=f"tinystories-{split}", url=f"{HF_DATASETS}/roneneldan/TinyStories/resolve/main/{filename}",
                  filename=filename, sha256=sha256, size=size, resumable=True,
                  description=f"TinyStories V2 (GPT-4 stories), {split} split")


def _fineweb_edu_shard(index: int) -> Corpus:
    filename = f"{index:03d}_00000.parquet"
    size, sha256 = FINEWEB_EDU_SHARDS[index]
    return Corpus(name=f"fineweb-edu-{index:03d}",
                  url=f"{HF_DATASETS}/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/{filename}",
                  filename=f"fineweb-edu-sample-10BT-{filename}", sha256=sha256, size=size, resumable=True,
                  description=f"FineWeb-Edu sample-10BT, shard {index}")


DOCUMENT_CORPORA: dict[str, DocumentCorpus] = {
    corpus.name: corpus
    for corpus in [
        DocumentCorpus(
            name="tinystories",
            files={"train": (_tinystories("train"),), "val": (_tinystories("valid"),)},
            fmt="separated",
            description="TinyStories V2: ~2.7M short stories written by GPT-4 with a 3-year-old's vocabulary "
                        "(Eldan and Li 2023); 2.2 GB train, 22 MB validation",
        ),
        DocumentCorpus(
            name="fineweb-edu",
            files={"all": tuple(_fineweb_edu_shard(i) for i in sorted(FINEWEB_EDU_SHARDS))},
            fmt="parquet",
            description="the first 2 of the 14 parquet shards of FineWeb-Edu's 10B-token sample (educational web "
                        "pages; ~2 GB each; needs pyarrow); for GPU runs",
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
    # A file reaches its final name only once complete and verified; still, a cache can be edited or damaged, and a
    # file of the right size is not the right file: check its SHA-256, and download again if it differs.
    if cached.is_file():
        try:
            verify(cached, corpus.sha256, corpus.size)
            return cached
        except ChecksumError:
            cached.unlink()
    if offline():
        raise FileNotFoundError(_offline_message(corpus, "MINILLAMA_OFFLINE is set"))
    fetch = download_resumable if corpus.resumable else download
    try:
        return fetch(corpus.url, cached, sha256=corpus.sha256, size=corpus.size)
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
    if name in DOCUMENT_CORPORA:
        raise ValueError(
            f"{name!r} is a corpus of many documents ({DOCUMENT_CORPORA[name].description}); stream it with "
            f"minillama.data.documents.text_source({name!r}).documents(split) instead of loading it as one string"
        )
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _read(path, encoding)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"folder {path} holds no text files ({', '.join(TEXT_SUFFIXES)})")
        return "\n\n".join(_read(p, encoding) for p in files)
    known = ", ".join(sorted([*CORPORA, *OFFLINE_CORPORA, *DOCUMENT_CORPORA]))
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
