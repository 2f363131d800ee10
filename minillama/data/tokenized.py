"""Tokenize a corpus once: a BPE tokenizer trained on it and its token shards, both cached by what they depend on.

Tokenizing is pure overhead at training time, so it happens once and is cached under ``cache_dir()``:

* ``tokenizers/<corpus>-bpe<vocab>.model`` (+ ``.json`` sidecar): a BPE tokenizer trained on (the start of) the
  corpus, keyed by the corpus and the vocabulary size;
* ``tokens/<corpus>-<tokenizer fingerprint>/<split>.bin`` (+ ``.json``): the token ids of each split, documents
  each followed by the end-of-text token, as ``uint16`` (vocabularies up to 65,536) or ``uint32``, written by
  :func:`minillama.tokenizer.shards.write_document_shard`. Keyed by the tokenizer's fingerprint, so a shard is
  never read back with the wrong tokenizer.

The shards are read with ``np.memmap``: the operating system pages in only the windows a batch touches, so a corpus
larger than memory trains as easily as tinyshakespeare.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minillama.data.documents import TextSource, text_source
from minillama.data.loader import split_tokens
from minillama.data.paths import cache_dir
from minillama.tokenizer.bpe import BPETokenizer
from minillama.tokenizer.shards import load_shard, shard_info_path, write_document_shard

EOT = "<|end_of_text|>"  # Llama 3's end-of-text token, placed after every document
TOKENIZER_TRAIN_CHARS = 20_000_000  # a BPE vocabulary of a few thousand tokens is settled long before this


@dataclass
class TokenizedCorpus:
    """A corpus ready for training: its tokenizer and its train/validation token arrays (memmaps)."""

    source: TextSource
    tokenizer: BPETokenizer
    tokenizer_path: Path
    train: np.ndarray
    val: np.ndarray

    def token_bytes(self) -> np.ndarray:
        """The number of UTF-8 bytes each token id stands for (0 for special tokens, which are not text).

        Bits per byte sum these over the predicted tokens: ``bpb = sum(loss nats) / sum(bytes) / ln 2``.
        """
        lengths = np.zeros(self.tokenizer.n_vocab, dtype=np.int64)
        for token_id, token in self.tokenizer.vocab.items():
            lengths[token_id] = len(token)
        return lengths


# --- tokenizer -------------------------------------------------------------------------------------------------------


def _training_text(source: TextSource, max_chars: int) -> Iterator[str]:
    """The documents of the first split (``train`` or ``all``), up to ``max_chars`` characters."""
    split = "train" if "train" in source.splits else source.splits[0]
    remaining = max_chars
    for document in source.documents(split):
        yield document[:remaining]
        remaining -= len(document)
        if remaining <= 0:
            return


def bpe_tokenizer_for(source: TextSource, vocab_size: int, progress: bool = False) -> Path:
    """The rank file of a BPE tokenizer with ``vocab_size`` ids trained on ``source``, trained on first use.

    The vocabulary is ``256`` byte tokens, ``vocab_size - 257`` merges and the end-of-text token, so it fills the
    model's embedding table exactly. ``vocab_size=256`` asks for a byte-level tokenizer: the 256 bytes and the
    end-of-text token, 257 ids (the trainer sizes the model's embedding table from the tokenizer).
    """
    vocab_size = max(vocab_size, 257)
    path = cache_dir() / "tokenizers" / f"{source.key}-bpe{vocab_size}.model"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tokenizer = BPETokenizer(name=path.stem).train(_training_text(source, TOKENIZER_TRAIN_CHARS), vocab_size,
                                                       special_tokens=[EOT], progress=progress)
        if tokenizer.n_vocab != vocab_size:
            raise ValueError(f"corpus {source.key!r} is too small for a vocabulary of {vocab_size} tokens (BPE ran "
                             f"out of pairs occurring twice at {tokenizer.n_vocab}); use a smaller vocab_size")
        tokenizer.save(path)  # the sidecar first would be nicer, but both writes are atomic and deterministic
    return path


# --- token shards ----------------------------------------------------------------------------------------------------


def token_shards(source: TextSource, tokenizer: BPETokenizer, progress: bool = False) -> dict[str, np.ndarray]:
    """``{split: memmap of token ids}`` for every split of ``source``, tokenized on first use."""
    fingerprint = tokenizer.fingerprint()
    folder = cache_dir() / "tokens" / f"{source.key}-{fingerprint[:16]}"
    shards = {}
    for split in source.splits:
        path = folder / f"{split}.bin"
        if not shard_info_path(path).is_file():  # the sidecar is written last: its presence means complete
            write_document_shard(source.documents(split), path, tokenizer, source=f"{source.key}:{split}",
                                 eot_id=tokenizer.special_tokens.get(EOT), progress=progress)
        shards[split] = load_shard(path, expected_fingerprint=fingerprint)
    return shards


def prepare_corpus(corpus: str | Path, tokenizer: str | Path = "bpe", vocab_size: int = 4096,
                   val_fraction: float = 0.1, progress: bool = False) -> TokenizedCorpus:
    """Tokenizer + train/validation tokens for ``corpus``, everything cached after the first call.

    ``tokenizer="bpe"`` trains (once) a BPE tokenizer with ``vocab_size`` ids on the corpus; otherwise it is the
    path of a tokenizer file in tiktoken's rank format (ours, or Meta's ``tokenizer.model``). A corpus without a
    validation split gives its last ``val_fraction`` of tokens to validation.
    """
    source = text_source(corpus)
    if str(tokenizer) == "bpe":
        tokenizer_path = bpe_tokenizer_for(source, vocab_size, progress)
    else:
        tokenizer_path = Path(tokenizer).expanduser()
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"tokenizer file {tokenizer_path} does not exist (use 'bpe' to train one)")
    bpe = BPETokenizer.load(tokenizer_path)
    shards = token_shards(source, bpe, progress)
    if source.has_validation_split:
        train, val = shards["train"], shards["val"]
    else:
        train, val = split_tokens(shards["all"], val_fraction)
    return TokenizedCorpus(source=source, tokenizer=bpe, tokenizer_path=tokenizer_path, train=train, val=val)
