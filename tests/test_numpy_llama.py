"""minillama.numpy_llama: layers and the full model against finite differences and plain-numpy references.

Every gradient is checked against central differences in float64; attention against a per-head numpy loop; RoPE
against numpy's complex numbers and Meta's loop-based frequency scaling; parameter counts against ModelConfig.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from minillama.autograd import Tensor, gradcheck, manual_seed, nn, no_grad
from minillama.config import get_preset
from minillama.numpy_llama import (
    Attention,
    FeedForward,
    Llama,
    TransformerBlock,
    apply_rope_scaling,
    apply_rotary_emb,
    lm_loss,
    precompute_freqs_cis,
    rope_frequencies,
)

F64 = np.float64


def small_config(**overrides):
    """``nano`` shrunk so that finite differences over every weight take a fraction of a second."""
    fields = dict(dim=16, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=11, multiple_of=8, max_seq_len=16)
    return get_preset("nano", **{**fields, **overrides})


def assert_gradients_match(loss_fn, tensors, names, rng, max_entries=None, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Backward once, then compare each tensor's ``.grad`` with central differences of the scalar ``loss_fn()``,
    over every entry or over ``max_entries`` random entries per tensor."""
    for t in tensors:
        t.grad = None
    loss_fn().backward()
    for name, t in zip(names, tensors, strict=True):
        assert t.grad is not None, f"{name} received no gradient"
        flat = t.data.reshape(-1)
        entries = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            entries = rng.choice(flat.size, size=max_entries, replace=False)
        numerical = np.empty(len(entries))
        for n, j in enumerate(entries):
            original = flat[j]
            flat[j] = original + eps
            with no_grad():
                plus = loss_fn().item()
            flat[j] = original - eps
            with no_grad():
                minus = loss_fn().item()
            flat[j] = original
            numerical[n] = (plus - minus) / (2 * eps)
        analytic = t.grad.reshape(-1)[entries]
        np.testing.assert_allclose(analytic, numerical, rtol=rtol, atol=atol, err_msg=f"gradient of {name}")


def weighted_sum(out: Tensor, weights: np.ndarray) -> Tensor:
    """A scalar whose gradient is a random vector-Jacobian product of ``out``."""
    return (out * weights).sum()


# ---------------------------------------------------------------------------------------------------------------------
# RoPE


def test_rope_frequencies_by_hand():
    config = get_preset("nano", dim=16, n_heads=4, rope_theta=10000.0)  # head_dim 4
    np.testing.assert_allclose(rope_frequencies(config), [1.0, 0.01])


def meta_apply_scaling(freqs, scale_factor=8, low_freq_factor=1, high_freq_factor=4, old_context_len=8192):
    """Meta's loop-based ``apply_scaling`` from llama-models (reference implementation)."""
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    new_freqs = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            new_freqs.append(freq)
        elif wavelen > low_freq_wavelen:
            new_freqs.append(freq / scale_factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            new_freqs.append((1 - smooth) * freq / scale_factor + smooth * freq)
    return np.array(new_freqs)


def test_rope_scaling_matches_meta_reference():
    config = get_preset("llama3.1-8b")
    unscaled = rope_frequencies(get_preset("llama3-8b"))
    scaled = rope_frequencies(config)
    np.testing.assert_allclose(scaled, meta_apply_scaling(unscaled), rtol=1e-15)
    wavelengths = 2 * np.pi / unscaled
    assert np.array_equal(scaled[wavelengths < 2048], unscaled[wavelengths < 2048])  # high frequencies kept
    np.testing.assert_allclose(scaled[wavelengths > 8192], unscaled[wavelengths > 8192] / 8)  # low ones slowed 8x
    middle = (wavelengths >= 2048) & (wavelengths <= 8192)
    assert middle.any() and np.all(scaled[middle] < unscaled[middle]) and np.all(scaled[middle] > unscaled[middle] / 8)


def test_rope_scaling_docstring_example():
    wavelengths = np.array([100.0, 100_000.0])
    scaled = apply_rope_scaling(2 * np.pi / wavelengths)
    np.testing.assert_allclose(2 * np.pi / scaled, [100.0, 800_000.0])


def test_rotary_emb_is_the_complex_product():
    config = get_preset("nano", use_scaled_rope=True, rope_original_max_seq_len=16)  # head_dim 16, scaling active
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, config.head_dim))  # (B, T, H, D)
    out = apply_rotary_emb(Tensor(x), precompute_freqs_cis(config, 5, dtype=F64)).data
    as_complex = x[..., 0::2] + 1j * x[..., 1::2]  # adjacent pairs, Meta's view_as_complex
    rotated = as_complex * np.exp(1j * np.outer(np.arange(5), rope_frequencies(config)))[None, :, None, :]
    np.testing.assert_allclose(out[..., 0::2], rotated.real, atol=1e-14)
    np.testing.assert_allclose(out[..., 1::2], rotated.imag, atol=1e-14)


@pytest.mark.parametrize("use_scaled_rope", [False, True])
def test_rope_scores_depend_only_on_relative_position(use_scaled_rope):
    config = get_preset("nano", use_scaled_rope=use_scaled_rope, rope_original_max_seq_len=32)
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, config.head_dim))
    table = precompute_freqs_cis(config, 100, dtype=F64)

    def score(m, n):
        rq = apply_rotary_emb(Tensor(q.reshape(1, 1, 1, -1)), table[m : m + 1]).data.ravel()
        rk = apply_rotary_emb(Tensor(k.reshape(1, 1, 1, -1)), table[n : n + 1]).data.ravel()
        return rq @ rk

    for m, n in [(3, 1), (7, 7), (2, 9)]:
        for shift in (1, 17, 60):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), rel=1e-12, abs=1e-12)
    assert score(5, 0) != pytest.approx(score(6, 0), rel=1e-3)  # but it does depend on the offset


def test_rope_keeps_norms_and_position_zero():
    config = small_config()
    x = np.random.default_rng(2).standard_normal((1, 6, 2, config.head_dim))
    out = apply_rotary_emb(Tensor(x), precompute_freqs_cis(config, 6, dtype=F64)).data
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13)
    np.testing.assert_array_equal(out[:, 0], x[:, 0])


def test_rope_table_offset_and_errors():
    config = small_config()
    full = precompute_freqs_cis(config, 10)
    np.testing.assert_array_equal(precompute_freqs_cis(config, 10, start=4), full[4:])
    assert full.dtype == np.float32 and full.shape == (10, config.head_dim // 2, 2)
    with pytest.raises(ValueError, match="start <= end"):
        precompute_freqs_cis(config, 2, start=5)
    with pytest.raises(ValueError, match="rotary table has shape"):
        apply_rotary_emb(Tensor(np.zeros((1, 3, 2, config.head_dim))), full)


def test_rope_gradcheck():
    config = small_config()
    table = precompute_freqs_cis(config, 5, dtype=F64)
    x = np.random.default_rng(3).standard_normal((2, 5, 3, config.head_dim))
    assert gradcheck(lambda t: apply_rotary_emb(t, table), [x])


# ---------------------------------------------------------------------------------------------------------------------
# Attention


def reference_attention(x, wq, wk, wv, wo, config):
    """Causal attention head by head with numpy loops: query head h reads key/value head h // n_rep."""
    B, T, _ = x.shape
    H, H_kv, D = config.n_heads, config.n_kv_heads, config.head_dim
    q = (x @ wq.T).reshape(B, T, H, D)
    k = (x @ wk.T).reshape(B, T, H_kv, D)
    v = (x @ wv.T).reshape(B, T, H_kv, D)
    angles = np.outer(np.arange(T), rope_frequencies(config))
    rotate = np.exp(1j * angles)[None, :, None, :]

    def rope(a):
        c = (a[..., 0::2] + 1j * a[..., 1::2]) * rotate
        return np.stack([c.real, c.imag], axis=-1).reshape(a.shape)

    q, k = rope(q), rope(k)
    out = np.zeros((B, T, H, D))
    for b in range(B):
        for h in range(H):
            kv = h // (H // H_kv)
            for t in range(T):
                scores = k[b, : t + 1, kv] @ q[b, t, h] / math.sqrt(D)
                p = np.exp(scores - scores.max())
                out[b, t, h] = (p / p.sum()) @ v[b, : t + 1, kv]
    return out.reshape(B, T, H * D) @ wo.T


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])  # multi-head, grouped-query, multi-query
def test_attention_matches_per_head_reference(n_kv_heads):
    manual_seed(0)
    config = small_config(n_kv_heads=n_kv_heads)
    attention = Attention(config, dtype=F64)
    x = np.random.default_rng(4).standard_normal((2, 7, config.dim))
    out = attention(Tensor(x), precompute_freqs_cis(config, 7, dtype=F64)).data
    weights = [getattr(attention, name).weight.data for name in ("wq", "wk", "wv", "wo")]
    np.testing.assert_allclose(out, reference_attention(x, *weights, config), rtol=1e-12, atol=1e-13)


def test_gqa_equals_multi_head_attention_with_repeated_kv_heads():
    manual_seed(1)
    gqa_config, mha_config = small_config(n_kv_heads=2), small_config(n_kv_heads=4)
    gqa, mha = Attention(gqa_config, dtype=F64), Attention(mha_config, dtype=F64)
    D, n_rep = gqa_config.head_dim, 2
    for name in ("wk", "wv"):  # kv head j serves query heads 2j, 2j+1: repeat its rows for both
        rows = getattr(gqa, name).weight.data.reshape(2, D, -1)
        getattr(mha, name).weight.data[...] = np.repeat(rows, n_rep, axis=0).reshape(4 * D, -1)
    for name in ("wq", "wo"):
        getattr(mha, name).weight.data[...] = getattr(gqa, name).weight.data
    x = Tensor(np.random.default_rng(5).standard_normal((2, 6, gqa_config.dim)))
    table = precompute_freqs_cis(gqa_config, 6, dtype=F64)
    np.testing.assert_allclose(gqa(x, table).data, mha(x, table).data, rtol=1e-12, atol=1e-13)


def test_attention_is_causal():
    manual_seed(2)
    config = small_config()
    attention = Attention(config, dtype=F64)
    table = precompute_freqs_cis(config, 8, dtype=F64)
    x = np.random.default_rng(6).standard_normal((1, 8, config.dim))
    changed = x.copy()
    changed[:, 5:] += 1.0  # change the future of position 4
    a, b = attention(Tensor(x), table).data, attention(Tensor(changed), table).data
    np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=1e-13)
    assert not np.allclose(a[:, 5:], b[:, 5:])


# ---------------------------------------------------------------------------------------------------------------------
# Layer gradients against finite differences (every weight entry and the input)


def layer_and_call(kind, config):
    table = precompute_freqs_cis(config, 5, dtype=F64)
    if kind == "attention":
        layer = Attention(config, dtype=F64)
        return layer, lambda x: layer(x, table)
    if kind == "feed_forward":
        layer = FeedForward(config, dtype=F64)
        return layer, layer
    if kind == "rms_norm":
        layer = nn.RMSNorm(config.dim, eps=config.norm_eps, dtype=F64)
        layer.weight.data[...] = np.random.default_rng(7).uniform(0.5, 1.5, config.dim)  # not all ones
        return layer, layer
    layer = TransformerBlock(config, dtype=F64)
    return layer, lambda x: layer(x, table)


@pytest.mark.parametrize("kind", ["rms_norm", "attention", "feed_forward", "block"])
def test_layer_gradients_match_finite_differences(kind):
    manual_seed(3)
    config = small_config()
    layer, call = layer_and_call(kind, config)
    rng = np.random.default_rng(8)
    x = Tensor(rng.standard_normal((2, 5, config.dim)), requires_grad=True)
    weights = rng.standard_normal((2, 5, config.dim))
    named = [("input", x), *layer.named_parameters()]
    assert_gradients_match(lambda: weighted_sum(call(x), weights), [t for _, t in named], [n for n, _ in named], rng)


# ---------------------------------------------------------------------------------------------------------------------
# The model


@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_model_gradients_match_finite_differences(tie_embeddings):
    """Forward + backward of the whole model (embeddings, 2 GQA blocks with scaled RoPE, norm, head, loss)."""
    manual_seed(4)
    config = small_config(tie_embeddings=tie_embeddings, use_scaled_rope=True, rope_original_max_seq_len=8)
    model = Llama(config, dtype=F64)
    for name, param in model.named_parameters():  # move the norm gains off 1 so their gradients are generic
        if name.endswith("norm.weight"):
            param.data[...] = np.random.default_rng(9).uniform(0.5, 1.5, param.shape)
    rng = np.random.default_rng(10)
    tokens = rng.integers(0, config.vocab_size, (2, 9))
    named = list(model.named_parameters())
    assert_gradients_match(lambda: lm_loss(model, tokens[:, :-1], tokens[:, 1:]), [p for _, p in named],
                           [n for n, _ in named], rng, max_entries=12)


def meta_names(n_layers, tied=False):
    names = ["tok_embeddings.weight"]
    for i in range(n_layers):
        names += [f"layers.{i}.attention.{w}.weight" for w in ("wq", "wk", "wv", "wo")]
        names += [f"layers.{i}.feed_forward.{w}.weight" for w in ("w1", "w2", "w3")]
        names += [f"layers.{i}.attention_norm.weight", f"layers.{i}.ffn_norm.weight"]
    return names + ["norm.weight"] + ([] if tied else ["output.weight"])


@pytest.mark.parametrize("tied", [False, True])
def test_state_dict_uses_meta_names_and_shapes(tied):
    config = get_preset("nano", tie_embeddings=tied)
    state = Llama(config).state_dict()
    assert sorted(state) == sorted(meta_names(config.n_layers, tied))
    D, H, H_kv, hidden = config.head_dim, config.n_heads, config.n_kv_heads, config.ffn_hidden_dim
    assert state["tok_embeddings.weight"].shape == (config.vocab_size, config.dim)
    assert state["layers.1.attention.wq.weight"].shape == (H * D, config.dim)
    assert state["layers.1.attention.wk.weight"].shape == (H_kv * D, config.dim)
    assert state["layers.1.attention.wo.weight"].shape == (config.dim, H * D)
    assert state["layers.0.feed_forward.w1.weight"].shape == (hidden, config.dim)
    assert state["layers.0.feed_forward.w2.weight"].shape == (config.dim, hidden)
    assert all(state[name].dtype == np.float32 for name in state)


@pytest.mark.parametrize("preset, overrides", [("nano", {}), ("tiny", {}), ("nano", {"tie_embeddings": True}),
                                               ("tiny", {"tie_embeddings": False, "n_kv_heads": 8})])
def test_parameter_count_matches_config(preset, overrides):
    config = get_preset(preset, **overrides)
    assert Llama(config).num_parameters() == config.num_params()


def test_tied_head_uses_the_embedding_matrix():
    manual_seed(5)
    config = small_config(tie_embeddings=True)
    model = Llama(config, dtype=F64)
    assert model.output is None
    tokens = np.array([[1, 2, 3]])
    table = precompute_freqs_cis(config, 3, dtype=F64)
    h = model.tok_embeddings(tokens)
    for layer in model.layers:
        h = layer(h, table)
    expected = model.norm(h).data @ model.tok_embeddings.weight.data.T  # (1, 3, dim) @ (dim, vocab)
    np.testing.assert_allclose(model(tokens).data, expected, rtol=1e-12)


def test_model_is_causal_and_batch_independent():
    manual_seed(6)
    model = Llama(small_config(), dtype=F64)
    tokens = np.array([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    logits = model(tokens).data
    changed = tokens.copy()
    changed[0, 4:] = 0
    np.testing.assert_allclose(model(changed).data[0, :4], logits[0, :4], rtol=1e-12)
    np.testing.assert_allclose(model(tokens[1:]).data[0], logits[1], rtol=1e-12)


def test_state_dict_round_trip_and_init():
    manual_seed(7)
    config = small_config()
    a, b = Llama(config), Llama(config)
    tokens = np.array([[3, 1, 4, 1, 5]])
    assert not np.allclose(a(tokens).data, b(tokens).data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(tokens).data, b(tokens).data)
    state = a.state_dict()
    assert np.all(state["norm.weight"] == 1.0)
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)
    big = Llama(get_preset("nano"))
    assert big.state_dict()["layers.0.attention.wo.weight"].std() == pytest.approx(residual_std, rel=0.05)
    assert big.state_dict()["layers.0.attention.wq.weight"].std() == pytest.approx(0.02, rel=0.05)


def test_model_errors_are_clear():
    config = small_config()
    model = Llama(config)
    with pytest.raises(TypeError, match="ModelConfig"):
        Llama({"dim": 16})
    with pytest.raises(ValueError, match="floating point"):
        Llama(config, dtype=np.int32)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(np.zeros((1, config.max_seq_len + 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        model(np.zeros(4, dtype=np.int64))
    with pytest.raises(IndexError, match=r"\[0, 11\)"):
        model(np.array([[1, 11]]))
    with pytest.raises(RuntimeError, match="layers.0.attention.wk.weight"):
        model.load_state_dict(Llama(small_config(n_kv_heads=4)).state_dict())
    with pytest.raises(RuntimeError, match="missing keys: output.weight"):
        model.load_state_dict(Llama(small_config(tie_embeddings=True)).state_dict())
    for bad, message in [({"n_kv_heads": 3}, "divisible by n_kv_heads"), ({"n_heads": 3}, "divisible by n_heads"),
                         ({"dim": 24, "n_heads": 8}, "must be even"), ({"vocab_size": 0}, "positive")]:
        with pytest.raises(ValueError, match=message):
            Llama(small_config(**bad))
