"""The real Llama 3 tokenizer: Meta's 128,000-token rank table, its split pattern and 256 special tokens.

This reproduces ``llama_models.llama3.tokenizer.Tokenizer`` (Meta's reference) on top of tiktoken, with the same
ids, including Meta's guard against very long inputs: text is encoded in slices of at most 400,000 characters,
and no slice holds more than 25,000 consecutive whitespace (or non-whitespace) characters, because the regex
engine's backtracking over such runs is slow and can overflow (tiktoken issue #195). The tokenizer file is
Meta's ``tokenizer.model``; by default the copy shipped in the ``llama-models`` package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Literal

from .patterns import LLAMA3_SPLIT_PATTERN
from .rankfile import read_rank_file, tokenizer_fingerprint

__all__ = [
    "LLAMA3_SPECIAL_TOKENS",
    "LLAMA3_TOKENIZER_SHA256",
    "Llama3Tokenizer",
    "default_tokenizer_path",
    "split_long_runs",
]

#: SHA-256 of Meta's published Llama 3 / 3.1 / 3.2 ``tokenizer.model``.
LLAMA3_TOKENIZER_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"

_NUM_RESERVED_SPECIAL_TOKENS = 256
_NAMED_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",  # end of message: the model wants a tool's answer
    "<|eot_id|>",  # end of turn
    "<|python_tag|>",
    "<|image|>",
]
#: Meta's 256 special tokens in id order; ids start right after the 128,000 ordinary tokens.
LLAMA3_SPECIAL_TOKENS: list[str] = _NAMED_SPECIAL_TOKENS + [
    f"<|reserved_special_token_{2 + i}|>" for i in range(_NUM_RESERVED_SPECIAL_TOKENS - len(_NAMED_SPECIAL_TOKENS))
]

TIKTOKEN_MAX_ENCODE_CHARS = 400_000  # Meta encodes at most this many characters per tiktoken call
MAX_NO_WHITESPACES_CHARS = 25_000  # ... and cuts longer runs of whitespace or of non-whitespace


def default_tokenizer_path() -> Path:
    """Meta's ``tokenizer.model`` inside the installed ``llama-models`` package."""
    try:
        from importlib.resources import files

        path = files("llama_models") / "llama3" / "tokenizer.model"
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "no Llama 3 tokenizer.model given and the llama-models package (which ships one) is not installed: "
            "pip install llama-models, or pass the path of Meta's tokenizer.model"
        ) from None
    return Path(os.fspath(path))


def split_long_runs(text: str, max_run: int = MAX_NO_WHITESPACES_CHARS) -> Iterator[str]:
    """Cut ``text`` so that no slice holds more than ``max_run`` consecutive whitespace or non-whitespace characters.

    Same slices as Meta's ``Tokenizer._split_whitespaces_or_nonwhitespaces``: a run is cut every ``max_run``
    characters from its start. Meta loops over characters in Python; here a regex finds only the long runs.
    Example: ``split_long_runs("aaaaa bb", 2) -> "aa", "aa", "a bb"``.
    """
    start = 0
    for run in re.finditer(rf"\s{{{max_run + 1},}}|\S{{{max_run + 1},}}", text):
        for cut in range(run.start() + max_run, run.end(), max_run):
            yield text[start:cut]
            start = cut
    yield text[start:]


class Llama3Tokenizer:
    """Meta's Llama 3 tokenizer (128,256 ids), with the reference implementation's ids and special tokens.

    >>> tok = Llama3Tokenizer()
    >>> tok.encode("hello world", bos=True)
    [128000, 15339, 1917]
    """

    pat_str = LLAMA3_SPLIT_PATTERN

    def __init__(self, model_path: str | os.PathLike | None = None) -> None:
        import tiktoken

        self.model_path = Path(model_path) if model_path is not None else default_tokenizer_path()
        self.mergeable_ranks = read_rank_file(self.model_path)
        num_base_tokens = len(self.mergeable_ranks)
        self.special_tokens: dict[str, int] = {
            token: num_base_tokens + i for i, token in enumerate(LLAMA3_SPECIAL_TOKENS)
        }
        self.model = tiktoken.Encoding(
            name=self.model_path.name,
            pat_str=self.pat_str,
            mergeable_ranks=self.mergeable_ranks,
            special_tokens=self.special_tokens,
        )
        self.n_words: int = num_base_tokens + len(self.special_tokens)
        self.bos_id: int = self.special_tokens["<|begin_of_text|>"]
        self.eos_id: int = self.special_tokens["<|end_of_text|>"]
        self.eot_id: int = self.special_tokens["<|eot_id|>"]
        self.eom_id: int = self.special_tokens["<|eom_id|>"]
        self.python_tag_id: int = self.special_tokens["<|python_tag|>"]
        self.pad_id: int = self.special_tokens["<|finetune_right_pad_id|>"]
        self.stop_tokens: list[int] = [self.eos_id, self.eom_id, self.eot_id]

    @property
    def n_vocab(self) -> int:
        """Number of ids (128,256 for Meta's file): the embedding table's row count."""
        return self.n_words

    @property
    def name(self) -> str:
        return f"llama3:{self.model_path.name}"

    def fingerprint(self) -> str:
        """SHA-256 of the rank table, pattern and special tokens (see ``tokenizer_fingerprint``)."""
        return tokenizer_fingerprint(self.mergeable_ranks, self.pat_str, self.special_tokens)

    def __repr__(self) -> str:
        return f"Llama3Tokenizer({os.fspath(self.model_path)!r}, n_words={self.n_words})"

    def encode(
        self,
        s: str,
        *,
        bos: bool = False,
        eos: bool = False,
        allowed_special: Literal["all"] | Collection[str] | None = None,
        disallowed_special: Literal["all"] | Collection[str] = (),
    ) -> list[int]:
        """Encode ``s``, optionally between ``<|begin_of_text|>`` and ``<|end_of_text|>``.

        Meta's defaults differ from tiktoken's: with no arguments, special-token strings in ``s`` are encoded as
        ordinary text (``disallowed_special=()``). Pass ``allowed_special="all"`` to turn them into their ids, or
        ``disallowed_special="all"`` to reject them with a ``ValueError``.
        """
        if not isinstance(s, str):
            raise TypeError(f"can only encode str, got {type(s).__name__}")
        allowed = set() if allowed_special is None else allowed_special
        if not allowed and not disallowed_special:  # no special token can appear: skip tiktoken's special search
            encode = self.model.encode_ordinary
        else:
            encode = partial(self.model.encode, allowed_special=allowed, disallowed_special=disallowed_special)
        ids: list[int] = [self.bos_id] if bos else []
        for i in range(0, len(s), TIKTOKEN_MAX_ENCODE_CHARS):
            for piece in split_long_runs(s[i : i + TIKTOKEN_MAX_ENCODE_CHARS]):
                ids.extend(encode(piece))
        if eos:
            ids.append(self.eos_id)
        return ids

    def encode_ordinary(self, s: str) -> list[int]:
        """Encode ``s`` with special-token strings as plain text and no ``bos``/``eos`` (the corpus path)."""
        return self.encode(s)

    def decode(self, t: Sequence[int]) -> str:
        """Decode ids to text; invalid UTF-8 (a cut-off character) becomes U+FFFD."""
        bad = [i for i in t if not 0 <= i < self.n_words]
        if bad:
            raise ValueError(f"token id {bad[0]} is not in the Llama 3 vocabulary (ids are 0..{self.n_words - 1})")
        return self.model.decode(list(t))

    def decode_bytes(self, t: Sequence[int]) -> bytes:
        """The raw bytes of ``t`` (for streaming output a character may span two tokens)."""
        return self.model.decode_bytes(list(t))
