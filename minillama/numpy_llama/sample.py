"""Sampling from a language model: greedy decoding, temperature and top-k (chapter 5).

A model gives next-token logits ``z``; generation turns them into a choice, appends it, and asks again.

- greedy (``temperature=0``): ``argmax z``, deterministic and prone to loops;
- temperature ``tau``: sample from ``softmax(z / tau)``; ``tau < 1`` sharpens the distribution, ``tau > 1`` flattens
  it, ``tau -> 0`` tends to greedy;
- top-k: keep the ``k`` largest logits and renormalise, cutting the long tail of unlikely tokens that otherwise gets
  sampled now and then {cite}`holtzman2020curious`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minillama.autograd import no_grad


def sample_next_token(
    logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Pick one token id per row of ``logits`` (B, V).

    ``temperature=0`` is greedy (argmax); otherwise a sample from ``softmax(logits / temperature)`` restricted to
    the ``top_k`` largest logits when ``top_k`` is given. Example: logits ``[[1, 3, 2]]`` with ``temperature=0``
    give ``[1]``; with ``top_k=1`` any temperature gives ``[1]`` too.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {logits.shape}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and not 1 <= top_k:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
    if temperature == 0:
        return logits.argmax(axis=-1)
    rng = np.random.default_rng() if rng is None else rng
    scaled = logits / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth_largest = np.partition(scaled, -top_k, axis=-1)[:, -top_k, None]  # (B, 1)
        scaled = np.where(scaled < kth_largest, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    cumulative = probs.cumsum(axis=-1)  # inverse-CDF sampling, one uniform number per row
    u = rng.random((len(probs), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= u).sum(axis=-1), probs.shape[-1] - 1)


def generate(
    model: Any,
    tokens: Any,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Extend the prompts ``tokens`` (B, T) by ``max_new_tokens`` ids each; returns (B, T + max_new_tokens).

    Each step runs the model on the last ``max_seq_len`` tokens (no KV cache: chapter 6 adds one) and samples the
    next token with :func:`sample_next_token`. ``rng`` is a numpy generator or a seed, for reproducible samples.
    """
    tokens = np.array(tokens, dtype=np.int64, ndmin=2)
    if tokens.shape[1] == 0:
        raise ValueError("generate needs a prompt of at least one token (e.g. the end-of-text id)")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    context = model.config.max_seq_len
    with no_grad():
        for _ in range(max_new_tokens):
            logits = model(tokens[:, -context:]).data[:, -1, :]  # (B, T, V) -> (B, V): the last position only
            next_ids = sample_next_token(logits, temperature, top_k, rng)
            tokens = np.concatenate([tokens, next_ids[:, None]], axis=1)
    return tokens
