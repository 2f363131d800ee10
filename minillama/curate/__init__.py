"""Data at scale (chapter 10): the curation stages behind Llama 3's 15T tokens, small enough to read and measure.

``text`` (normalized words, hashed shingles) -> ``exact`` (normalized-text hash) -> ``minhash`` and ``lsh``
(near duplicates) -> ``lines`` (boilerplate lines across documents) -> ``filters`` (Gopher/C4/StarCoder rules)
-> ``classifier`` (hashed n-gram logistic regression) -> ``mixing`` (weighted, resumable stream of sources).
``pipeline`` streams a corpus (``documents``: JSON lines or files) through the stages, ``dirty`` builds the offline
corpus with known answers the chapter measures them on, and ``cli`` is ``minillama curate``.
"""

from minillama.curate.classifier import QualityClassifier, precision_recall
from minillama.curate.dirty import build_dirty_corpus
from minillama.curate.documents import Document, read_documents, write_jsonl
from minillama.curate.exact import ExactDedup
from minillama.curate.filters import FilterConfig, document_stats, failed_filter
from minillama.curate.lines import count_lines, remove_repeated_lines
from minillama.curate.lsh import LSHIndex, candidate_pairs, collision_probability, optimal_bands_rows
from minillama.curate.minhash import MinHasher, estimate_jaccard, jaccard
from minillama.curate.mixing import Mixer
from minillama.curate.pipeline import CurateConfig, curate
from minillama.curate.text import normalize, shingle_hashes, shingle_strings, text_hash, words

__all__ = [
    "CurateConfig", "Document", "ExactDedup", "FilterConfig", "LSHIndex", "MinHasher", "Mixer", "QualityClassifier",
    "build_dirty_corpus", "candidate_pairs", "collision_probability", "count_lines", "curate", "document_stats",
    "estimate_jaccard", "failed_filter", "jaccard", "normalize", "optimal_bands_rows", "precision_recall",
    "read_documents", "remove_repeated_lines", "shingle_hashes", "shingle_strings", "text_hash", "words", "write_jsonl",
]
