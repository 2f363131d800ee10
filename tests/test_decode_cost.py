"""KV-cache bytes against hand calculations and against the model's own cache tensors; the decode roofline."""

from __future__ import annotations

import doctest

import pytest
import torch

import minillama.decode_cost
from minillama.config import PRESETS, get_preset
from minillama.decode_cost import decode_bytes_per_step, kv_cache_bytes_per_token, kv_cache_table, roofline_tokens_per_s
from minillama.model import KVCache


def test_doctests():
    assert doctest.testmod(minillama.decode_cost).failed == 0


def test_hand_calculations():
    # Llama 3.1 405B: 126 layers, 8 kv heads of 128, bf16: 2 * 126 * 8 * 128 * 2 bytes per token
    config = get_preset("llama3.1-405b")
    assert kv_cache_bytes_per_token(config) == 516_096
    assert kv_cache_bytes_per_token(config) * 131_072 == 67_645_734_912  # 63 GiB per 128K-token sequence
    assert kv_cache_bytes_per_token(config, mha=True) == 16 * 516_096  # 128 heads instead of 8
    assert kv_cache_bytes_per_token(get_preset("llama3-8b"), 1) == 65_536  # fp8 / int8 cache


@pytest.mark.parametrize("name", ["nano", "tiny", "small-100m"])
def test_equals_the_models_cache_tensors(name):
    config = get_preset(name)
    cache = KVCache(config, batch_size=3, max_seq_len=16, dtype=torch.float32)
    stored = cache.keys.numel() * 4 + cache.values.numel() * 4
    assert stored == 3 * 16 * kv_cache_bytes_per_token(config, 4)


def test_table_covers_every_preset_and_the_gqa_saving():
    rows = kv_cache_table()
    assert [row.preset for row in rows] == list(PRESETS)
    for row in rows:
        assert row.mha_bytes_per_token * row.n_kv_heads == row.bytes_per_token * row.n_heads
        assert row.cache_bytes_at_max_seq_len == row.bytes_per_token * row.max_seq_len


def test_roofline():
    config = get_preset("llama3.1-8b")
    weights = config.num_params() * 2  # bf16
    assert roofline_tokens_per_s(3.35e12, weights, config, context=0) == pytest.approx(3.35e12 / weights)
    # batch 8 at 8K context: 8 sequences' caches (8 * 8192 * 128 KiB = 8 GiB) on top of 16 GB of weights
    step = decode_bytes_per_step(weights, config, context=8192, batch=8)
    assert step == weights + 8 * 8192 * 131_072
    assert roofline_tokens_per_s(3.35e12, weights, config, 8192, batch=8) == pytest.approx(8 * 3.35e12 / step)
