"""What decoding one token costs in bytes: the KV cache per token, and the roofline of batch decode.

A decode step reads every weight once (shared by the batch) and every cached key and value of every sequence, and
does about 2 FLOPs per weight per sequence: at small batch it moves bytes far faster than it can use FLOPs, so its
speed is bounded by memory bandwidth, ``tokens/s <= batch * bandwidth / bytes moved per step`` (the roofline,
Williams et al. 2009). Grouped-query attention (Ainslie et al. 2023) shrinks the cache by ``n_heads / n_kv_heads``.

>>> kv_cache_bytes_per_token(get_preset("llama3.1-8b"))  # 2 (K, V) * 32 layers * 8 heads * 128 * 2 bytes
131072
"""

from __future__ import annotations

from dataclasses import dataclass

from minillama.config import PRESETS, ModelConfig, get_preset

__all__ = ["KVRow", "decode_bytes_per_step", "kv_cache_bytes_per_token", "kv_cache_table", "roofline_tokens_per_s"]


def kv_cache_bytes_per_token(config: ModelConfig, bytes_per_value: float = 2, *, mha: bool = False) -> int:
    """Bytes the KV cache holds per token: ``2 * n_layers * n_kv_heads * head_dim * bytes_per_value``.

    ``mha=True``: as if every query head had its own key/value head (``n_kv_heads = n_heads``), multi-head attention.
    """
    heads = config.n_heads if mha else config.n_kv_heads
    return int(2 * config.n_layers * heads * config.head_dim * bytes_per_value)


@dataclass(frozen=True)
class KVRow:
    """One preset's KV cache: bytes per token with GQA and with MHA, and the whole cache at its context length."""

    preset: str
    n_heads: int
    n_kv_heads: int
    bytes_per_token: int
    mha_bytes_per_token: int
    max_seq_len: int
    cache_bytes_at_max_seq_len: int


def kv_cache_table(bytes_per_value: float = 2) -> list[KVRow]:
    """:class:`KVRow` for every preset (bf16 by default), for batch 1."""
    rows = []
    for name in PRESETS:
        config = get_preset(name)
        per_token = kv_cache_bytes_per_token(config, bytes_per_value)
        rows.append(KVRow(name, config.n_heads, config.n_kv_heads, per_token,
                          kv_cache_bytes_per_token(config, bytes_per_value, mha=True), config.max_seq_len,
                          per_token * config.max_seq_len))
    return rows


def decode_bytes_per_step(weight_bytes: int, config: ModelConfig, context: int, batch: int = 1,
                          kv_bytes_per_value: float = 2) -> int:
    """Bytes one decode step reads: all weights once, plus each sequence's cache of ``context`` tokens."""
    return int(weight_bytes + batch * context * kv_cache_bytes_per_token(config, kv_bytes_per_value))


def roofline_tokens_per_s(bandwidth_bytes_per_s: float, weight_bytes: int, config: ModelConfig, context: int,
                          batch: int = 1, kv_bytes_per_value: float = 2) -> float:
    """Upper bound on decode throughput (tokens/s over the batch) when memory bandwidth is the limit.

    Example: Llama 3.1 8B in bf16 (16.06 GB of weights) on an H100 (3.35 TB/s), batch 1, short context: about
    3.35e12 / 16.06e9 = 209 tokens/s.
    """
    step = decode_bytes_per_step(weight_bytes, config, context, batch, kv_bytes_per_value)
    return batch * bandwidth_bytes_per_s / step
