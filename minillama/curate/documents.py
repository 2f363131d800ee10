"""Documents in and out of the pipeline: a :class:`Document` per text, read from JSON lines or files, written as
JSON lines.

JSON lines is the format of web-scale corpora (FineWeb, RedPajama, The Stack): one ``{"text": ...}`` object per line,
read one line at a time, so a file of any size streams through in bounded memory. Writes are atomic: a temporary
file renamed into place, so an interrupted run never leaves half a corpus under the final name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from minillama.atomic import atomic_write
from minillama.errors import UserError

PROSE_SUFFIXES = (".txt", ".md", ".rst")
CODE_SUFFIXES = (".py",)


@dataclass(frozen=True)
class Document:
    """One document: ``domain`` picks the filters ("prose" or "code"); ``kind`` is the ground truth, if known."""

    id: str
    text: str
    source: str = ""
    domain: str = "prose"
    kind: str = ""


def read_documents(path: str | Path) -> Iterator[Document]:
    """Documents of a JSON-lines file (one ``{"text": ...}`` object per line, optionally ``id``, ``domain``,
    ``source``, ``kind``), of a text file, or of a folder of text and Python files (one document per file).

    A name of :data:`minillama.data.DOCUMENT_CORPORA` that is not a local path (``tinystories``, ``fineweb-edu``)
    streams that corpus's documents, every split, downloading it on first use. The path is checked at once (a
    :class:`UserError` names what is wrong); the documents are read lazily.
    """
    from minillama.data import DOCUMENT_CORPORA

    path = Path(path).expanduser()
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        return _jsonl_documents(path)
    if not path.exists() and str(path) in DOCUMENT_CORPORA:
        return _corpus_documents(DOCUMENT_CORPORA[str(path)])
    if not (path.is_file() or path.is_dir()):
        raise UserError(f"no such file or folder: {path} (named corpora: {', '.join(DOCUMENT_CORPORA)})")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in PROSE_SUFFIXES + CODE_SUFFIXES)
    if not files:
        raise UserError(f"{path} holds no documents: give a .jsonl file, a text file, or a folder of "
                        f"{', '.join(PROSE_SUFFIXES + CODE_SUFFIXES)} files")
    return (Document(str(f.relative_to(path) if path.is_dir() else f.name),
                     f.read_text(encoding="utf-8", errors="replace"), str(path),
                     "code" if f.suffix in CODE_SUFFIXES else "prose") for f in files)


def _corpus_documents(corpus) -> Iterator[Document]:
    for split in corpus.splits:
        for number, text in enumerate(corpus.documents(split)):
            yield Document(f"{corpus.name}-{split}-{number}", text, corpus.name)


def _jsonl_documents(path: Path) -> Iterator[Document]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                text = record["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise UserError(f"{path}:{number}: expected a JSON object with a 'text' field ({error})") from None
            if record.get("domain", "prose") not in ("prose", "code"):
                raise UserError(f"{path}:{number}: 'domain' must be 'prose' or 'code', got {record['domain']!r}")
            yield Document(str(record.get("id", number)), text, record.get("source", ""),
                           record.get("domain", "prose"), record.get("kind", ""))


def write_jsonl(documents: Iterable[Document], path: str | Path) -> int:
    """Write documents as JSON lines (:func:`~minillama.atomic.atomic_write`: a bad document further up the stream,
    or Ctrl-C, leaves nothing half-written behind); returns the count."""
    count = 0

    def write(file: Path) -> None:
        nonlocal count
        with open(file, "w", encoding="utf-8") as f:
            for document in documents:
                f.write(json.dumps(asdict(document), ensure_ascii=False) + "\n")
                count += 1

    atomic_write(path, write)
    return count
