"""Read and write tokenizers in tiktoken's rank-file format.

The format is the one OpenAI's tiktoken and Meta's Llama 3 ``tokenizer.model`` use: one line per token,
``<base64 of the token's bytes> <rank>``, ranks ``0..n-1``. A token's rank is also its id, and the BPE encoder merges
the adjacent pair whose concatenation has the lowest rank, so this one table is the whole trained tokenizer except
for the split pattern and the special tokens. Those two go into a small JSON sidecar next to the rank file
(``tokenizer.model`` -> ``tokenizer.model.json``), which tiktoken and Meta's loader simply ignore.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from operator import itemgetter
from pathlib import Path
from typing import Any

from minillama.atomic import atomic_write

__all__ = [
    "rank_file_bytes",
    "read_rank_file",
    "read_sidecar",
    "sidecar_path",
    "tokenizer_fingerprint",
    "write_rank_file",
    "write_sidecar",
]

SIDECAR_FORMAT = "minillama-bpe"


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar that holds the pattern and special tokens of the rank file at ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def rank_file_bytes(ranks: dict[bytes, int]) -> bytes:
    """The contents of the rank file for ``ranks`` (token bytes -> rank): one ``base64 rank`` line per token."""
    by_rank = sorted(ranks.items(), key=itemgetter(1))
    return "".join(f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in by_rank).encode("ascii")


def write_rank_file(path: str | os.PathLike, ranks: dict[bytes, int]) -> None:
    """Write ``ranks`` (token bytes -> rank) as a tiktoken rank file, sorted by rank."""
    atomic_write(path, rank_file_bytes(ranks))


def tokenizer_fingerprint(ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int]) -> str:
    """A SHA-256 hex digest that identifies a tokenizer: its rank table, split pattern and special tokens.

    Token shards record it, so a shard is never read back with a different tokenizer by mistake.
    """
    digest = hashlib.sha256(rank_file_bytes(ranks))
    digest.update(json.dumps({"pattern": pattern, "special_tokens": special_tokens}, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def read_rank_file(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a tiktoken rank file into ``{token bytes: rank}``, checking it line by line.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file and line) for anything
    that is not a well-formed table of unique tokens with unique ranks ``0..n-1`` covering all 256 single bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a tiktoken rank file: byte {e.start} is not ASCII") from None
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected '<base64 token> <rank>', got {line[:80]!r}")
        token_b64, rank_str = fields
        try:
            token = base64.b64decode(token_b64, validate=True)
        except binascii.Error:
            raise ValueError(f"{path}:{lineno}: {token_b64[:80]!r} is not valid base64") from None
        if not rank_str.isdigit():
            raise ValueError(f"{path}:{lineno}: rank {rank_str[:80]!r} is not a non-negative integer")
        rank = int(rank_str)
        if not token:
            raise ValueError(f"{path}:{lineno}: empty token")
        if token in ranks:
            raise ValueError(f"{path}:{lineno}: token {token!r} appears twice (ranks {ranks[token]} and {rank})")
        if rank in seen_ranks:
            raise ValueError(f"{path}:{lineno}: rank {rank} appears twice")
        ranks[token] = rank
        seen_ranks.add(rank)
    if not ranks:
        raise ValueError(f"{path} is empty: a rank file needs at least the 256 single-byte tokens")
    if max(seen_ranks) != len(ranks) - 1:
        missing = min(set(range(len(ranks))) - seen_ranks)
        raise ValueError(f"{path}: ranks must be 0..{len(ranks) - 1} without gaps, rank {missing} is missing")
    missing_bytes = [b for b in range(256) if bytes([b]) not in ranks]
    if missing_bytes:
        raise ValueError(
            f"{path}: a byte-level BPE table must contain all 256 single bytes; "
            f"{len(missing_bytes)} are missing (first: {bytes([missing_bytes[0]])!r})"
        )
    return ranks


def write_sidecar(path: str | os.PathLike, pattern: str, special_tokens: dict[str, int], name: str) -> None:
    """Write the JSON sidecar (pattern, special tokens, name) for the rank file at ``path``."""
    meta = {"format": SIDECAR_FORMAT, "version": 1, "name": name, "pattern": pattern, "special_tokens": special_tokens}
    atomic_write(sidecar_path(path), (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """Read the sidecar of the rank file at ``path``; ``None`` if there is none. Malformed sidecars raise."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{side} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise ValueError(f'{side} is not a {SIDECAR_FORMAT} sidecar (missing "format": "{SIDECAR_FORMAT}")')
    pattern, special = meta.get("pattern"), meta.get("special_tokens")
    if not isinstance(pattern, str):
        raise ValueError(f'{side}: "pattern" must be a string')
    if not isinstance(special, dict) or not all(isinstance(k, str) and type(v) is int for k, v in special.items()):
        raise ValueError(f'{side}: "special_tokens" must map token strings to integer ids')
    return meta
