"""Our tokenizers in Hugging Face's format: ``tokenizer.json`` + ``tokenizer_config.json``.

A Hugging Face model folder carries its tokenizer as a ``tokenizers`` pipeline, so that
``transformers.AutoTokenizer.from_pretrained(folder)`` gives the ids the model was trained on. Our tokenizers
(:class:`~minillama.tokenizer.BPETokenizer`, any tiktoken rank file, and Meta's Llama 3 tokenizer) are byte-level BPE
in tiktoken's form: a rank table, a split pattern and special tokens. The same tokenizer in Hugging Face's form:

- **pre-tokenizer**: ``Split`` on the pattern (each match a piece of its own, ``"Isolated"``), then ``ByteLevel``,
  which writes each UTF-8 byte as one printable character, GPT-2's ``bytes_to_unicode`` (Radford et al. 2019): the
  printable Latin-1 bytes stand for themselves and the others map to U+0100 onwards (the space becomes ``"Ġ"``);
- **model**: ``BPE`` with the vocabulary (each token's bytes in that alphabet, id = rank) and a merge list.
  tiktoken merges, at each step, the adjacent pair whose *concatenation* has the lowest rank. A merge list ranks
  *pairs*, so it lists every split of every token into two tokens, ordered by the rank of the token they make
  (as ``transformers``' own tiktoken converter does): then both rules merge the same pairs in the same order.
  ``ignore_merges`` gives a piece that is itself a token its id directly, as tiktoken does; that is how the 678
  tokens Meta added to Llama 3 that merging cannot reach are produced;
- **added tokens**: the special tokens, cut out of the text before anything else (``allowed_special="all"``);
- **post-processor**: ``<|begin_of_text|>`` in front of every sequence when the tokenizer has one (as Meta's
  Hugging Face release of Llama 3 does and as ``minillama generate`` does), else nothing;
- **decoder**: ``ByteLevel``, back from the printable alphabet to bytes, then UTF-8.

Only ``json`` is needed to write the files; ``transformers`` (or ``tokenizers``) reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from minillama.atomic import atomic_write
from minillama.tokenizer import LLAMA3_TOKENIZER_SHA256, BPETokenizer, Llama3Tokenizer

__all__ = [
    "bytes_to_unicode",
    "hf_merges",
    "hf_tokenizer_config",
    "hf_tokenizer_json",
    "tokenizer_from_hf_json",
    "load_tokenizer",
    "save_hf_tokenizer",
]

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKENS = ("<|end_of_text|>", "<|endoftext|>")  # Meta's name, then GPT-2's


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to 256 printable characters.

    The 188 printable Latin-1 bytes (``!`` to ``~``, ``¡`` to ``¬``, ``®`` to ``ÿ``) stand for themselves; the other
    68 (controls, space, soft hyphen) become U+0100, U+0101, ... in byte order. Example: ``b" "`` (32) -> ``"Ġ"``
    (U+0120), ``b"\\n"`` (10) -> ``"Ċ"`` (U+010A), ``b"a"`` -> ``"a"``.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    for offset, byte in enumerate(b for b in range(256) if b not in mapping):
        mapping[byte] = chr(256 + offset)
    return mapping


def _as_text(token: bytes) -> str:
    """A token's bytes in the ``bytes_to_unicode`` alphabet: ``b" the" -> "Ġthe"``."""
    alphabet = bytes_to_unicode()
    return "".join(alphabet[byte] for byte in token)


def hf_merges(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every split of every multi-byte token into two tokens, ordered by the rank of the token they make.

    With this list, BPE's "merge the adjacent pair listed first" picks the pair tiktoken picks, "the adjacent pair
    whose concatenation ranks lowest": a pair is listed exactly when its concatenation is a token. Example with
    ranks ``{a:0, b:1, c:2, ab:3, bc:4, abc:5}``: ``[(a, b), (b, c), (a, bc), (ab, c)]``.
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        merges.extend((rank, ranks[left], ranks[right], left, right) for left, right in splits)
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def _parts(tokenizer: BPETokenizer | Llama3Tokenizer) -> tuple[dict[bytes, int], str, dict[str, int]]:
    """The rank table, split pattern and special tokens of one of our tokenizers."""
    if isinstance(tokenizer, Llama3Tokenizer):
        return tokenizer.mergeable_ranks, tokenizer.pat_str, tokenizer.special_tokens
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.ranks, tokenizer.pattern, tokenizer.special_tokens
    raise TypeError(f"expected a BPETokenizer, a Llama3Tokenizer or a rank-file path, got {type(tokenizer).__name__}")


def load_tokenizer(tokenizer: BPETokenizer | Llama3Tokenizer | str | os.PathLike) -> BPETokenizer | Llama3Tokenizer:
    """A tokenizer object from a tokenizer or a tiktoken rank file: Meta's ``tokenizer.model`` (recognised by its
    SHA-256) becomes a :class:`Llama3Tokenizer` with its 256 special tokens, any other file a :class:`BPETokenizer`
    (pattern and special tokens from its sidecar, if it has one)."""
    if isinstance(tokenizer, (BPETokenizer, Llama3Tokenizer)):
        return tokenizer
    path = Path(tokenizer)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    if hashlib.sha256(path.read_bytes()).hexdigest() == LLAMA3_TOKENIZER_SHA256:
        return Llama3Tokenizer(path)
    return BPETokenizer.load(path)


def hf_tokenizer_json(tokenizer: BPETokenizer | Llama3Tokenizer) -> dict[str, Any]:
    """The ``tokenizer.json`` of ``tokenizer`` (see the module docstring for the pipeline)."""
    ranks, pattern, special_tokens = _parts(tokenizer)
    added_tokens = [
        {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for content, token_id in sorted(special_tokens.items(), key=lambda item: item[1])
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    post_processor: dict[str, Any] = byte_level
    if BOS_TOKEN in special_tokens:
        bos = {"SpecialToken": {"id": BOS_TOKEN, "type_id": 0}}
        post_processor = {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, bos, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS_TOKEN: {"id": BOS_TOKEN, "ids": [special_tokens[BOS_TOKEN]],
                                           "tokens": [BOS_TOKEN]}},
        }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
                byte_level,
            ],
        },
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": {_as_text(token): rank for token, rank in sorted(ranks.items(), key=lambda item: item[1])},
            "merges": [[_as_text(left), _as_text(right)] for left, right in hf_merges(ranks)],
        },
    }


def hf_tokenizer_config(tokenizer: BPETokenizer | Llama3Tokenizer, model_max_length: int | None = None
                        ) -> dict[str, Any]:
    """The ``tokenizer_config.json``: the fast-tokenizer class, the begin/end-of-text tokens, no space clean-up
    (``decode`` must give back the text byte for byte), and the model's context length when given."""
    _, _, special_tokens = _parts(tokenizer)
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    if BOS_TOKEN in special_tokens:
        config["bos_token"] = BOS_TOKEN
    eos = next((token for token in EOS_TOKENS if token in special_tokens), None)
    if eos is not None:
        config["eos_token"] = eos
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    return config


def save_hf_tokenizer(tokenizer: BPETokenizer | Llama3Tokenizer | str | os.PathLike, folder: str | os.PathLike,
                      model_max_length: int | None = None) -> Path:
    """Write ``folder/tokenizer.json`` and ``folder/tokenizer_config.json`` for ``tokenizer`` (an object or a rank
    file, see :func:`load_tokenizer`), so that ``transformers.AutoTokenizer.from_pretrained(folder)`` loads it."""
    tokenizer = load_tokenizer(tokenizer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"tokenizer.json": hf_tokenizer_json(tokenizer),
             "tokenizer_config.json": hf_tokenizer_config(tokenizer, model_max_length)}
    for name, data in files.items():
        atomic_write(folder / name, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return folder


def tokenizer_from_hf_json(path: str | os.PathLike) -> BPETokenizer:
    """Read back a ``tokenizer.json`` in the form :func:`hf_tokenizer_json` writes (a ``Split`` pattern, byte-level
    BPE): the inverse of the alphabet gives each token's bytes, its id is its rank.

    Other ``tokenizer.json`` files (SentencePiece, WordPiece, ...) are refused with a ``ValueError``.
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    model, pre = data.get("model") or {}, data.get("pre_tokenizer") or {}
    splits = [p for p in pre.get("pretokenizers", []) if p.get("type") == "Split"]
    if model.get("type") != "BPE" or len(splits) != 1 or "Regex" not in splits[0].get("pattern", {}):
        raise ValueError(f"{path} is not a byte-level BPE tokenizer with a split pattern (the form minillama "
                         f"writes); pass --tokenizer PATH to a tokenizer.model")
    to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
    try:
        ranks = {bytes(to_byte[char] for char in text): rank for text, rank in model["vocab"].items()}
    except KeyError as error:
        raise ValueError(f"{path}: token characters outside the byte-level alphabet ({error})") from None
    special = {token["content"]: token["id"] for token in data.get("added_tokens", [])}
    return BPETokenizer.from_ranks(ranks, pattern=splits[0]["pattern"]["Regex"], special_tokens=special,
                                   name=path.parent.name or "tokenizer.json")
