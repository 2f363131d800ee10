"""Chapter 2: tokenization. Byte-level BPE from scratch, the real Llama 3 tokenizer, the chat template, shards.

- :class:`BPETokenizer` trains and runs byte-level BPE in pure Python and saves tiktoken rank files;
  :meth:`BPETokenizer.to_tiktoken` gives the same ids at Rust speed.
- :class:`Llama3Tokenizer` is Meta's 128K tokenizer with its 256 special tokens; :class:`ChatFormat` its template.
- :func:`write_shard` / :func:`load_shard` turn a corpus into a memory-mapped array of token ids for training.
"""

from __future__ import annotations

from .bpe import BPETokenizer, bpe_encode_piece, bpe_merge_parts, count_pieces, learn_merges
from .chat import ChatFormat, Message
from .llama3 import LLAMA3_SPECIAL_TOKENS, LLAMA3_TOKENIZER_SHA256, Llama3Tokenizer, default_tokenizer_path
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, LLAMA3_SPLIT_PATTERN, last_safe_split
from .rankfile import read_rank_file, tokenizer_fingerprint, write_rank_file
from .shards import ShardInfo, load_shard, read_shard_info, write_document_shard, write_shard

__all__ = [
    "BPETokenizer",
    "ChatFormat",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "LLAMA3_SPECIAL_TOKENS",
    "LLAMA3_SPLIT_PATTERN",
    "LLAMA3_TOKENIZER_SHA256",
    "Llama3Tokenizer",
    "Message",
    "ShardInfo",
    "bpe_encode_piece",
    "bpe_merge_parts",
    "count_pieces",
    "default_tokenizer_path",
    "last_safe_split",
    "learn_merges",
    "load_shard",
    "read_rank_file",
    "read_shard_info",
    "tokenizer_fingerprint",
    "write_document_shard",
    "write_rank_file",
    "write_shard",
]
