"""The PyTorch Llama against Meta's reference RoPE code and Hugging Face transformers; the KV cache against
recomputation; meta-device construction of the real sizes.

The numpy-vs-PyTorch check (float64 logits and every gradient to 1e-8) is ``tests/test_numpy_vs_torch.py``.
"""

from __future__ import annotations

import ast
import inspect
import math
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import minillama.model
import minillama.rope
from minillama.config import PRESETS, ModelConfig, get_preset
from minillama.model import KVCache, Llama, RMSNorm, repeat_kv
from minillama.rope import apply_rotary_emb, precompute_freqs_cis

# A small config with everything Llama 3.1 has: GQA (8 query heads share 2 kv heads), a SwiGLU multiplier, and the
# 3.1 rope scaling, with an "original" context short enough that all three frequency bands occur.
SMALL = ModelConfig(dim=64, n_layers=2, n_heads=8, n_kv_heads=2, vocab_size=300, multiple_of=32,
                    ffn_dim_multiplier=1.3, rope_theta=10000.0, use_scaled_rope=True, rope_original_max_seq_len=32,
                    max_seq_len=256)


def meta_reference_rope():
    """Meta's ``precompute_freqs_cis`` and ``apply_rotary_emb``, taken verbatim from ``llama_models`` (whose module
    cannot be imported here: it needs fairscale)."""
    import llama_models.llama3

    source = (Path(llama_models.llama3.__file__).parent / "model.py").read_text()
    wanted = {"apply_scaling", "precompute_freqs_cis", "reshape_for_broadcast", "apply_rotary_emb"}
    functions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name in wanted]
    namespace = {"torch": torch, "math": math, "Tuple": tuple, "Optional": typing.Optional}
    exec(compile(ast.Module(body=functions, type_ignores=[]), "llama_models/llama3/model.py", "exec"), namespace)
    return namespace["precompute_freqs_cis"], namespace["apply_rotary_emb"]


@pytest.mark.parametrize("scaled", [False, True])
def test_rope_equals_metas_reference_code(scaled):
    meta_precompute, meta_apply = meta_reference_rope()
    config = get_preset("llama3.1-8b", use_scaled_rope=scaled)
    T = 300
    ours = precompute_freqs_cis(config, T)
    theirs = meta_precompute(config.head_dim, T, config.rope_theta, scaled)  # complex64 (T, D/2)
    # the same float32 angles; cos/sin and torch.polar may differ in the last bit
    torch.testing.assert_close(ours, torch.view_as_real(theirs), rtol=0, atol=2e-7)
    offset = precompute_freqs_cis(config, 200, start=150)
    torch.testing.assert_close(offset, ours[150:200], rtol=0, atol=0)
    torch.manual_seed(0)
    xq, xk = torch.randn(2, T, 4, config.head_dim), torch.randn(2, T, 2, config.head_dim)
    meta_q, meta_k = meta_apply(xq, xk, theirs)
    torch.testing.assert_close(apply_rotary_emb(xq, ours), meta_q, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(apply_rotary_emb(xk, ours), meta_k, rtol=1e-6, atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    config = get_preset("nano")
    freqs = precompute_freqs_cis(config, 64)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, config.head_dim), torch.randn(1, 1, 1, config.head_dim)

    def score(m, n):
        qm = apply_rotary_emb(q, freqs[m : m + 1])
        kn = apply_rotary_emb(k, freqs[n : n + 1])
        return float((qm * kn).sum())

    assert score(10, 3) == pytest.approx(score(40, 33), abs=1e-5)
    assert score(5, 5) == pytest.approx(float((q * k).sum()), abs=1e-5)  # same position: no net rotation
    assert score(10, 3) != pytest.approx(score(10, 4), abs=1e-3)


def test_rope_scaling_bands():
    config = get_preset("llama3.1-8b")
    unscaled = minillama.rope.rope_frequencies(get_preset("llama3-8b"))
    scaled = minillama.rope.rope_frequencies(config)
    wavelength = 2 * math.pi / unscaled
    high = wavelength < 8192 / 4
    low = wavelength > 8192 / 1
    torch.testing.assert_close(scaled[high], unscaled[high])
    torch.testing.assert_close(scaled[low], unscaled[low] / 8)
    middle = ~high & ~low
    assert middle.any() and (scaled[middle] < unscaled[middle]).all() and (scaled[middle] > unscaled[middle] / 8).all()


def test_rmsnorm_matches_torch():
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-5)
    norm.weight.data.normal_()
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, eps=1e-5))


def test_rmsnorm_precision_follows_the_input():
    """bf16 in: Meta's float32 arithmetic (``x.float()``), bit for bit; float64 in: float64 throughout."""
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-5)
    norm.weight.data.normal_()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    weight = norm.weight.detach().double().numpy()
    expected = x.numpy() / np.sqrt((x.numpy() ** 2).mean(-1, keepdims=True) + 1e-5) * weight
    out = norm.double()(x)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-14, atol=0)
    low = x.bfloat16()
    meta = (low.float() * torch.rsqrt(low.float().pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(low)
    meta = meta * norm.weight.bfloat16()
    assert torch.equal(norm.bfloat16()(low), meta)


def test_rope_in_float64_is_exact():
    """A float64 table holds float64 angles, and a float64 input is rotated in complex128: numpy's complex
    exponential agrees to round-off (a float32 table would be off by ~1e-5 at position 300)."""
    config = get_preset("nano", use_scaled_rope=False)
    T, D = 300, config.head_dim
    table = precompute_freqs_cis(config, T, dtype=torch.float64)
    assert table.dtype == torch.float64
    angles = np.outer(np.arange(T), config.rope_theta ** (-np.arange(0, D, 2) / D))  # (T, D/2)
    np.testing.assert_allclose(table.numpy(), np.stack((np.cos(angles), np.sin(angles)), -1), rtol=0, atol=1e-13)
    x = torch.randn(2, T, 3, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pairs = x.numpy()[..., 0::2] + 1j * x.numpy()[..., 1::2]  # (B, T, H, D/2) complex
    rotated = pairs * np.exp(1j * angles)[None, :, None, :]
    out = apply_rotary_emb(x, table)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out[..., 0::2].numpy(), rotated.real, rtol=0, atol=1e-13)
    np.testing.assert_allclose(out[..., 1::2].numpy(), rotated.imag, rtol=0, atol=1e-13)
    assert apply_rotary_emb(x.bfloat16(), table).dtype == torch.bfloat16  # computed in float32, returned as bf16
    with pytest.raises(ValueError, match="float32 or float64"):
        precompute_freqs_cis(config, T, dtype=torch.bfloat16)


def test_repeat_kv_equals_repeat_interleave():
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(repeat_kv(x, 4), x.repeat_interleave(4, dim=1))
    assert repeat_kv(x, 1) is x


def hf_model_from(model: Llama, tmp_path: Path):
    """``transformers.LlamaForCausalLM`` holding ``model``'s weights, written and read through our HF I/O."""
    from transformers import LlamaForCausalLM

    from minillama.weights import save_hf

    save_hf(model, tmp_path / "hf")
    return LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()


@pytest.mark.parametrize("tie", [False, True])
def test_logits_and_greedy_tokens_equal_transformers(tmp_path, tie):
    torch.manual_seed(0)
    config = get_preset("nano", **{**SMALL.to_dict(), "tie_embeddings": tie})
    model = Llama(config).eval()
    hf = hf_model_from(model, tmp_path)
    tokens = torch.randint(0, config.vocab_size, (2, 100))  # past rope_original_max_seq_len: scaling matters
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    assert (ours - theirs).abs().max() <= 1e-4

    from minillama.generate import generate

    prompt = tokens[:1, :8]
    with_cache = generate(model, prompt, 32, temperature=0)
    without_cache = generate(model, prompt, 32, temperature=0, use_cache=False)
    hf_tokens = hf.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)
    assert torch.equal(with_cache, without_cache)
    assert torch.equal(with_cache, hf_tokens)


def test_kv_cache_decoding_equals_full_recomputation():
    torch.manual_seed(0)
    model = Llama(SMALL)
    tokens = torch.randint(0, SMALL.vocab_size, (3, 40))
    with torch.no_grad():
        full = model(tokens)  # (B, T, V)
        cache = model.make_cache(batch_size=3, max_seq_len=40)
        prefill = model(tokens[:, :10], cache=cache)  # a prompt of 10
        chunk = model(tokens[:, 10:25], start_pos=10, cache=cache)  # a chunk after a cached prefix (masked)
        steps = [model(tokens[:, t : t + 1], start_pos=t, cache=cache) for t in range(25, 40)]  # one at a time
    incremental = torch.cat([prefill, chunk, *steps], dim=1)
    torch.testing.assert_close(incremental, full, rtol=1e-5, atol=1e-5)
    last = model(tokens[:, :10], last_only=True)
    torch.testing.assert_close(last, full[:, 9:10], rtol=1e-5, atol=1e-5)


def test_float64_kv_cache_decoding_equals_recomputation_to_round_off():
    """In float64 (RMSNorm, RoPE angles and rotation all float64) cached decoding and recomputation differ only by
    float64 round-off, so positions offset by ``start_pos`` use exactly the angles of the full table."""
    torch.manual_seed(0)
    model = Llama(SMALL).double()
    tokens = torch.randint(0, SMALL.vocab_size, (2, 30))
    with torch.no_grad():
        full = model(tokens)
        cache = model.make_cache(batch_size=2, max_seq_len=30)
        steps = [model(tokens[:, :12], cache=cache)]
        steps += [model(tokens[:, t : t + 1], start_pos=t, cache=cache) for t in range(12, 30)]
    assert full.dtype == torch.float64
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-12)


def test_kv_cache_errors_and_layout():
    cache = KVCache(SMALL, batch_size=2, max_seq_len=8)
    assert cache.keys.shape == (SMALL.n_layers, 2, SMALL.n_kv_heads, 8, SMALL.head_dim)
    k = torch.zeros(2, SMALL.n_kv_heads, 5, SMALL.head_dim)
    with pytest.raises(ValueError, match="holds 8 positions; positions up to 10"):
        cache.update(0, 5, k, k)
    with pytest.raises(ValueError, match="batch size 2, got 3"):
        cache.update(0, 0, torch.zeros(3, SMALL.n_kv_heads, 1, SMALL.head_dim), torch.zeros(3, 2, 1, 16))
    with pytest.raises(ValueError, match="exceed the model's max_seq_len"):
        Llama(get_preset("nano"))(torch.zeros(1, 129, dtype=torch.long))


def test_model_trains_without_a_cache():
    torch.manual_seed(0)
    model = Llama(get_preset("nano"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, 256, (4, 33))
    losses = []
    for _ in range(20):
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(256), rel=0.05)  # a fresh model guesses uniformly
    assert losses[-1] < 0.5 * losses[0]  # and memorizes one batch


def test_init_weights_statistics():
    torch.manual_seed(0)
    config = get_preset("tiny", tie_embeddings=False)
    model = Llama(config)
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)
    assert model.layers[0].attention.wo.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.layers[1].feed_forward.w2.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.layers[2].attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.output.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(model.norm.weight, torch.ones(config.dim))


def test_parameter_names_are_metas():
    names = set(Llama(get_preset("nano")).state_dict())
    expected = {"tok_embeddings.weight", "norm.weight", "output.weight"}
    for i in range(2):
        expected |= {f"layers.{i}.attention.{w}.weight" for w in ("wq", "wk", "wv", "wo")}
        expected |= {f"layers.{i}.feed_forward.{w}.weight" for w in ("w1", "w2", "w3")}
        expected |= {f"layers.{i}.attention_norm.weight", f"layers.{i}.ffn_norm.weight"}
    assert names == expected
    tied = Llama(get_preset("nano", tie_embeddings=True))
    assert "output.weight" not in tied.state_dict()


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("llama")])
def test_real_presets_build_on_the_meta_device(name):
    config = get_preset(name)
    with torch.device("meta"):
        model = Llama(config)
    assert model.num_params() == config.num_params()
    assert all(p.device.type == "meta" for p in model.parameters())
    with torch.device("meta"):  # the forward pass runs there too (shapes only)
        logits = model(torch.zeros(1, 4, dtype=torch.long))
    assert logits.shape == (1, 4, config.vocab_size)


def test_meta_device_model_materializes_and_initializes():
    with torch.device("meta"):
        model = Llama(get_preset("nano"))
    model.to_empty(device="cpu")
    model.init_weights()
    assert model.tok_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))).all()


def test_bfloat16_forward_runs_and_tracks_float32():
    torch.manual_seed(0)
    model = Llama(SMALL)
    tokens = torch.randint(0, SMALL.vocab_size, (1, 50))
    with torch.no_grad():
        reference = model(tokens)
        low = model.to(torch.bfloat16)(tokens)
    assert low.dtype == torch.bfloat16
    assert (low.float() - reference).abs().max() < 0.05


def test_model_files_stay_single_device():
    for module in (minillama.model, minillama.rope):
        source = inspect.getsource(module)
        assert "torch.distributed" not in source and "torch.inference_mode" not in source and ".cuda(" not in source
