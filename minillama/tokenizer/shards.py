"""Corpus -> token shard: tokenize a large text file once, train from the ids many times.

A shard is a flat binary file of token ids (``uint16`` when every id fits, as for vocabularies up to 65,536, else
``uint32``) with a JSON sidecar saying which tokenizer made it (name and fingerprint), the dtype, the number of
tokens and documents, and the end-of-text id that separates documents. Training reads it with ``np.memmap``, so a
corpus larger than memory costs nothing to open and random windows are one slice away.

Writing streams the text in chunks cut at safe places (:func:`~minillama.tokenizer.patterns.last_safe_split`) and
at document separators, tokenizes the chunks in a process pool (results are consumed in order, so the shard is
the same for any number of processes), and renames the finished files into place.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minillama.atomic import atomic_write

from .llama3 import split_long_runs
from .patterns import last_safe_split

__all__ = ["ShardInfo", "load_shard", "read_shard_info", "shard_info_path", "write_document_shard", "write_shard"]

SHARD_FORMAT = "minillama-token-shard"
_FORCE_CUT = 32  # cut a chunk anyway once it is this many times chunk_chars without a safe place


@dataclass
class ShardInfo:
    """What the JSON sidecar of a shard records."""

    dtype: str  # "uint16" or "uint32"
    num_tokens: int
    num_documents: int
    eot_id: int  # appended after every document
    tokenizer_name: str
    tokenizer_fingerprint: str  # SHA-256 of ranks, pattern and special tokens
    n_vocab: int
    sources: list[str]
    document_separator: str | None  # None: each source file is one document
    format: str = SHARD_FORMAT
    version: int = 1


@dataclass
class _EncoderSpec:
    """Everything a worker process needs to rebuild the tokenizer as a tiktoken encoding."""

    name: str
    pattern: str
    ranks: dict[bytes, int]
    special_tokens: dict[str, int]
    n_vocab: int
    fingerprint: str
    eot_id: int | None


def _encoder_spec(tokenizer: Any) -> _EncoderSpec:
    """Accept a :class:`BPETokenizer`, a :class:`Llama3Tokenizer` or a ``tiktoken.Encoding``."""
    from .bpe import BPETokenizer
    from .llama3 import Llama3Tokenizer
    from .rankfile import tokenizer_fingerprint

    if isinstance(tokenizer, Llama3Tokenizer):
        return _EncoderSpec(
            tokenizer.name,
            tokenizer.pat_str,
            tokenizer.mergeable_ranks,
            tokenizer.special_tokens,
            tokenizer.n_words,
            tokenizer.fingerprint(),
            tokenizer.eos_id,  # <|end_of_text|> separates documents in Llama 3 pretraining
        )
    if isinstance(tokenizer, BPETokenizer):
        special = tokenizer.special_tokens
        eot = next((special[s] for s in ("<|end_of_text|>", "<|endoftext|>") if s in special), None)
        return _EncoderSpec(
            tokenizer.name,
            tokenizer.pattern,
            tokenizer.ranks,
            special,
            tokenizer.n_vocab,
            tokenizer.fingerprint(),
            eot,
        )
    if all(hasattr(tokenizer, a) for a in ("_pat_str", "_mergeable_ranks", "_special_tokens")):  # tiktoken.Encoding
        ranks, pattern, special = tokenizer._mergeable_ranks, tokenizer._pat_str, tokenizer._special_tokens
        return _EncoderSpec(
            tokenizer.name,
            pattern,
            ranks,
            special,
            tokenizer.n_vocab,
            tokenizer_fingerprint(ranks, pattern, special),
            special.get("<|endoftext|>", special.get("<|end_of_text|>")),
        )
    raise TypeError(
        f"cannot write shards with a {type(tokenizer).__name__}: expected a BPETokenizer, "
        "Llama3Tokenizer or tiktoken.Encoding"
    )


_worker_encoding = None  # the tiktoken encoding of this worker process, built once by _init_worker


def _init_worker(spec: _EncoderSpec) -> None:
    import tiktoken

    global _worker_encoding
    _worker_encoding = tiktoken.Encoding(
        name=spec.name, pat_str=spec.pattern, mergeable_ranks=spec.ranks, special_tokens=spec.special_tokens
    )


def _read_blocks(path: Path, chunk_chars: int) -> Iterator[str]:
    with open(path, encoding="utf-8", newline="") as f:  # newline="": keep "\r\n" as it is
        while block := f.read(chunk_chars):
            yield block


def _document_pieces(blocks: Iterator[str], separator: str | None, chunk_chars: int) -> Iterator[tuple[str, bool]]:
    """Yield ``(text, ends_document)`` pieces of a stream of text blocks, each about ``chunk_chars`` long or less.

    Pieces end at occurrences of ``separator`` (dropped; empty documents are skipped) or at safe places inside a
    document, so encoding the pieces one by one gives the ids of encoding every document whole. The end of the
    stream ends a document. Without any safe place for ``32 * chunk_chars`` characters, a piece is cut anyway.
    """
    keep = len(separator) if separator else 0  # never cut inside a separator that may continue in the next block
    carry, in_document = "", False
    for block in blocks:
        text = carry + block
        if separator:
            *documents, text = text.split(separator)
            for document in documents:
                if document or in_document:
                    yield document, True
                in_document = False
        if len(text) > chunk_chars:
            cut = last_safe_split(text, len(text) - keep)
            if cut == 0 and len(text) > _FORCE_CUT * chunk_chars:
                cut = len(text) - keep
            if cut:
                yield text[:cut], False
                text, in_document = text[cut:], True
        carry = text
    if carry or in_document:
        yield carry, True


def _tasks(pieces: Iterator[tuple[str, bool]], chunk_chars: int) -> Iterator[list[tuple[str, bool]]]:
    """Group consecutive pieces into tasks of about ``chunk_chars`` characters (many short documents per task)."""
    task: list[tuple[str, bool]] = []
    size = 0
    for piece in pieces:
        task.append(piece)
        size += len(piece[0])
        if size >= chunk_chars:
            yield task
            task, size = [], 0
    if task:
        yield task


def _encode_task(task: list[tuple[str, bool]], eot_id: int, dtype: str) -> tuple[bytes, int, int]:
    """Ids of a task's pieces (special-token strings as plain text), ``eot_id`` after each document end.

    Returns the ids as bytes of ``dtype``, the number of documents ended and the number of UTF-8 bytes of text.
    """
    eot = np.array([eot_id], dtype=np.uint32)
    arrays, documents, text_bytes = [], 0, 0
    for text, ends_document in task:
        arrays.extend(_worker_encoding.encode_to_numpy(part, disallowed_special=()) for part in split_long_runs(text))
        if ends_document:
            arrays.append(eot)
            documents += 1
        text_bytes += len(text.encode("utf-8", errors="surrogatepass"))
    return np.concatenate(arrays).astype(dtype).tobytes(), documents, text_bytes


def shard_info_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of the shard ``path``: ``train.bin -> train.json``."""
    return Path(path).with_suffix(".json")


def write_shard(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    tokenizer: Any,
    *,
    document_separator: str | None = None,
    eot_id: int | None = None,
    chunk_chars: int = 1 << 20,
    processes: int | None = None,
    progress: bool = True,
) -> ShardInfo:
    """Tokenize the UTF-8 text file(s) ``sources`` into the shard ``out_path`` (``.bin``) and its ``.json`` sidecar.

    Documents are the source files, or the pieces between occurrences of ``document_separator`` (empty pieces are
    skipped); each is followed by ``eot_id`` (default: the tokenizer's end-of-text token). Special-token strings
    inside the text are encoded as plain text. Files are streamed in pieces of about ``chunk_chars`` characters
    that ``processes`` workers encode (default: one per CPU; 1: no pool). Returns the sidecar's :class:`ShardInfo`.
    """
    sources = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(s) for s in sources]
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"corpus file not found: {source}")
    if document_separator == "":
        raise ValueError("document_separator must be a non-empty string or None")
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be positive, got {chunk_chars}")
    pieces = (
        piece
        for source in sources
        for piece in _document_pieces(_read_blocks(source, chunk_chars), document_separator, chunk_chars)
    )
    total_bytes = sum(source.stat().st_size for source in sources)
    labels = [os.fspath(s) for s in sources]
    return _write(
        pieces, out_path, tokenizer, eot_id, chunk_chars, processes, progress, total_bytes, labels, document_separator
    )


def write_document_shard(
    documents: Iterable[str],
    out_path: str | os.PathLike,
    tokenizer: Any,
    *,
    source: str = "documents",
    eot_id: int | None = None,
    chunk_chars: int = 1 << 20,
    processes: int | None = None,
    progress: bool = True,
) -> ShardInfo:
    """Like :func:`write_shard`, from an iterable of document strings (streamed; empty documents are skipped).

    ``source`` is a label for the sidecar (``"tinystories:train"``).
    """
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be positive, got {chunk_chars}")
    pieces = (
        piece
        for document in documents
        if document
        for piece in _document_pieces(
            (document[i : i + chunk_chars] for i in range(0, len(document), chunk_chars)), None, chunk_chars
        )
    )
    return _write(pieces, out_path, tokenizer, eot_id, chunk_chars, processes, progress, None, [source], None)


def _write(
    pieces: Iterator[tuple[str, bool]],
    out_path: str | os.PathLike,
    tokenizer: Any,
    eot_id: int | None,
    chunk_chars: int,
    processes: int | None,
    progress: bool,
    total_bytes: int | None,
    sources: list[str],
    document_separator: str | None,
) -> ShardInfo:
    """Encode ``pieces`` into ``out_path`` through a temporary file, then rename it and write the sidecar."""
    from tqdm.auto import tqdm

    spec = _encoder_spec(tokenizer)
    eot_id = spec.eot_id if eot_id is None else eot_id
    if eot_id is None:
        raise ValueError(f"tokenizer {spec.name!r} has no <|end_of_text|> or <|endoftext|> token: pass eot_id")
    if not 0 <= eot_id < spec.n_vocab:
        raise ValueError(f"eot_id {eot_id} is outside the vocabulary (0..{spec.n_vocab - 1})")
    dtype = "uint16" if spec.n_vocab <= 1 << 16 else "uint32"
    processes = (os.cpu_count() or 1) if processes is None else processes

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    num_bytes = num_documents = 0
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"tokenizing {out_path.name}", disable=not progress)
    try:
        with open(tmp, "wb") as out:
            for data, documents, text_bytes in _encoded_tasks(
                spec, _tasks(pieces, chunk_chars), eot_id, dtype, processes
            ):
                out.write(data)
                num_bytes += len(data)
                num_documents += documents
                bar.update(text_bytes)
            out.flush()
            os.fsync(out.fileno())
        info = ShardInfo(
            dtype=dtype,
            num_tokens=num_bytes // np.dtype(dtype).itemsize,
            num_documents=num_documents,
            eot_id=eot_id,
            tokenizer_name=spec.name,
            tokenizer_fingerprint=spec.fingerprint,
            n_vocab=spec.n_vocab,
            sources=sources,
            document_separator=document_separator,
        )
        shard_info_path(out_path).unlink(missing_ok=True)  # no reader may pair the new .bin with an old sidecar
        os.replace(tmp, out_path)
        atomic_write(shard_info_path(out_path), (json.dumps(asdict(info), indent=2) + "\n").encode("utf-8"))
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    return info


def _encoded_tasks(
    spec: _EncoderSpec, tasks: Iterator[list[tuple[str, bool]]], eot_id: int, dtype: str, processes: int
) -> Iterator[tuple[bytes, int, int]]:
    """:func:`_encode_task` of every task, in order, with at most ``2 * processes`` tasks in flight."""
    if processes <= 1:
        _init_worker(spec)
        for task in tasks:
            yield _encode_task(task, eot_id, dtype)
        return
    import multiprocessing

    with multiprocessing.get_context().Pool(processes, initializer=_init_worker, initargs=(spec,)) as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_encode_task, (task, eot_id, dtype)))
            if len(pending) >= 2 * processes:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def read_shard_info(path: str | os.PathLike) -> ShardInfo:
    """Read and check the sidecar of the shard ``path``."""
    side = shard_info_path(path)
    if not side.is_file():
        raise FileNotFoundError(f"shard metadata not found: {side} (written last by write_shard; was it interrupted?)")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        info = ShardInfo(**meta)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
        raise ValueError(f"{side} is not a token-shard sidecar: {e}") from None
    if info.format != SHARD_FORMAT or info.dtype not in ("uint16", "uint32"):
        raise ValueError(f"{side} is not a {SHARD_FORMAT} sidecar with dtype uint16 or uint32")
    return info


def load_shard(path: str | os.PathLike, expected_fingerprint: str | None = None) -> np.memmap:
    """Open the shard ``path`` read-only as a 1-D ``np.memmap`` of token ids, after checking its sidecar.

    An empty shard gives an empty array.
    Pass ``expected_fingerprint`` (``tokenizer.fingerprint()``) to refuse a shard made by another tokenizer.
    """
    path = Path(path)
    info = read_shard_info(path)
    if expected_fingerprint is not None and info.tokenizer_fingerprint != expected_fingerprint:
        raise ValueError(
            f"{path} was tokenized by {info.tokenizer_name!r} (fingerprint {info.tokenizer_fingerprint[:12]}...), "
            f"not by the expected tokenizer (fingerprint {expected_fingerprint[:12]}...)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"shard not found: {path}")
    expected_size = info.num_tokens * np.dtype(info.dtype).itemsize
    if path.stat().st_size != expected_size:
        raise ValueError(
            f"{path} holds {path.stat().st_size} bytes but its sidecar promises {info.num_tokens} {info.dtype} "
            f"tokens ({expected_size} bytes): the shard is truncated or does not belong to this sidecar"
        )
    if info.num_tokens == 0:  # mmap cannot map an empty file
        return np.zeros(0, dtype=info.dtype)
    return np.memmap(path, dtype=info.dtype, mode="r", shape=(info.num_tokens,))
