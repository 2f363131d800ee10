"""Text corpora for the book: named datasets with verified downloads, an offline mirror, and local files.

``load_text("tinyshakespeare")`` is the whole interface most chapters need. Downloads are verified against a
SHA-256 checksum and written atomically, so an interrupted download never leaves a corrupt file in the cache.
"""

from minillama.data.corpora import CORPORA, Corpus, corpus_path, load_text
from minillama.data.download import ChecksumError, download
from minillama.data.paths import cache_dir, mirror_dir

__all__ = [
    "CORPORA",
    "ChecksumError",
    "Corpus",
    "cache_dir",
    "corpus_path",
    "download",
    "load_text",
    "mirror_dir",
]
