"""Bits per byte: the language-modelling loss on a scale that does not depend on the tokenizer.

A per-token loss compares only models that cut text the same way: a tokenizer with longer tokens has fewer, harder
predictions. Dividing the summed loss (nats) by the UTF-8 bytes the predicted tokens stand for, and by ln 2, gives
bits per byte, the cost of the *text*, whatever the vocabulary (Gao et al. 2020, The Pile).

The trainer's :mod:`minillama.train.evaluate` holds the sums and the formula; :func:`bits_per_byte` applies them to
any model, token array and tokenizer:
the validation split's consecutive windows (:func:`minillama.data.loader.eval_batches`), the byte length of every
token id (``TokenizedCorpus.token_bytes`` for our BPE, :func:`token_byte_lengths` for any tokenizer).
"""

from __future__ import annotations

import numpy as np
import torch

from minillama.data.loader import eval_batches
from minillama.train.evaluate import loss_sums, metrics_from_sums


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes per token id (0 for special tokens, which are not text), for our BPE or Meta's tokenizer.

    Example: a vocabulary ``{0: b"a", 1: b"th", 2: b" the"}`` gives ``[1, 2, 4]``.
    """
    lengths = np.zeros(tokenizer.n_vocab, dtype=np.int64)
    special = set(getattr(tokenizer, "special_tokens", {}).values())
    for token_id in range(tokenizer.n_vocab):
        if token_id not in special:
            lengths[token_id] = len(tokenizer.decode_bytes([token_id]))
    return lengths


def bits_per_byte(model: torch.nn.Module, tokens: np.ndarray, token_bytes: np.ndarray, seq_len: int,
                  batch_size: int = 8, max_batches: int = 0) -> dict[str, float]:
    """Loss (nats per token) and bits per byte of ``model`` on ``tokens``, swept in consecutive windows.

    ``bpb = sum of losses (nats) / bytes of the predicted tokens / ln 2``: the trainer's own sums
    (:func:`minillama.train.evaluate.loss_sums`), for any model, token array and byte table.
    """
    device = next(model.parameters()).device
    batches = eval_batches(tokens, batch_size, seq_len, max_batches=max_batches, device=device)
    totals = loss_sums(model, batches, torch.as_tensor(token_bytes, device=device))
    if totals[2] == 0:
        raise ValueError("the predicted tokens are all special tokens: there is no text to measure bits per byte on")
    metrics = metrics_from_sums(totals)
    return {"loss": metrics["val_loss"], "bpb": metrics["val_bpb"], "tokens": metrics["val_tokens"],
            "bytes": int(totals[2])}


def text_bits_per_byte(model: torch.nn.Module, tokenizer, text: str, seq_len: int | None = None,
                       batch_size: int = 8) -> dict[str, float]:
    """Bits per byte of ``model`` on a text, tokenized by its own ``tokenizer`` (ordinary text, no special tokens)."""
    tokens = np.asarray(tokenizer.encode_ordinary(text), dtype=np.int64)
    seq_len = seq_len or model.config.max_seq_len
    return bits_per_byte(model, tokens, token_byte_lengths(tokenizer), seq_len, batch_size)
