"""Text corpora for the book: named datasets with verified downloads, an offline mirror, and local files.

``load_text("tinyshakespeare")`` is the whole interface most chapters need. Downloads are verified against a
SHA-256 checksum and written atomically, so an interrupted download never leaves a corrupt file in the cache.

For training (chapter 7): :mod:`minillama.data.documents` streams any corpus as documents per split,
:mod:`minillama.data.tokenized` tokenizes it once into cached token shards, and :mod:`minillama.data.loader` cuts
those into ``(B, T)`` batches (these three import numpy and torch, so they are not imported here).
"""

from minillama.data.corpora import CORPORA, DOCUMENT_CORPORA, Corpus, DocumentCorpus, corpus_path, load_text
from minillama.data.download import ChecksumError, download
from minillama.data.paths import cache_dir, mirror_dir
from minillama.data.resumable import download_resumable

__all__ = [
    "CORPORA",
    "ChecksumError",
    "Corpus",
    "DOCUMENT_CORPORA",
    "DocumentCorpus",
    "cache_dir",
    "corpus_path",
    "download",
    "download_resumable",
    "load_text",
    "mirror_dir",
]
