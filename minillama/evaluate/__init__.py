"""Chapter 12: evaluation. Bits per byte, multiple-choice log-likelihood scoring, noise, contamination, tasks.

``bpb`` (the loss per byte of text), ``scoring`` (log p(answer | context) with a shared KV cache, the harness's
``acc``/``acc_norm``/``acc_bytes``/``acc_mutual_info``), ``tasks`` (items, JSONL, k-shot prompts), ``generated``
and ``public`` (the tasks), ``noise`` (bootstrap intervals, spread), ``contamination`` (13-gram overlap), ``run``
(a task over a model) and ``cli`` (``minillama eval``).
"""

from minillama.evaluate.bpb import bits_per_byte, text_bits_per_byte, token_byte_lengths
from minillama.evaluate.contamination import corpus_ngrams, item_overlap, ngrams, words
from minillama.evaluate.noise import bootstrap_interval, paired_bootstrap, spread
from minillama.evaluate.run import evaluate_task, score_item
from minillama.evaluate.scoring import encode_pair, predictions, score_continuations
from minillama.evaluate.tasks import Item, Task, fewshot_context, get_task, read_jsonl, write_jsonl

__all__ = [
    "Item", "Task", "bits_per_byte", "bootstrap_interval", "corpus_ngrams", "encode_pair", "evaluate_task",
    "fewshot_context", "get_task", "item_overlap", "ngrams", "paired_bootstrap", "predictions", "read_jsonl",
    "score_continuations", "score_item", "spread", "text_bits_per_byte", "token_byte_lengths", "words",
    "write_jsonl",
]
