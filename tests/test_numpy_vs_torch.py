"""The numpy Llama (chapters 3-5) against the PyTorch Llama (chapter 6) with the same weights.

One ``state_dict`` with Meta's names moves between the two implementations unchanged. In float64 the logits and the
gradient of every parameter agree to 1e-8 relative (two independent implementations of the same arithmetic; only
round-off separates them); in float32 to float32 round-off.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch_model = pytest.importorskip("minillama.model")
torch_rope = pytest.importorskip("minillama.rope")

from minillama.autograd import manual_seed  # noqa: E402
from minillama.config import get_preset  # noqa: E402
from minillama.numpy_llama import Llama, apply_rope_scaling, lm_loss, precompute_freqs_cis, rope_frequencies  # noqa: E402

CONFIGS = {
    # GQA (4 query heads, 2 kv heads), untied head, Llama 3.1 rope scaling active inside the sequence length
    "gqa-scaled-rope": dict(use_scaled_rope=True, rope_original_max_seq_len=16),
    # tied embeddings (Llama 3.2 style), multi-query attention
    "tied-mqa": dict(tie_embeddings=True, n_kv_heads=1),
}


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|``: relative to the tensor's scale, so near-zero entries of a
    gradient do not dominate."""
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def both_models(name: str, dtype):
    config = get_preset("nano", **CONFIGS[name])
    manual_seed(0)
    numpy_model = Llama(config, dtype=dtype)
    pytorch_model = torch_model.Llama(config).to(torch.float64 if dtype == np.float64 else torch.float32)
    pytorch_model.load_state_dict({k: torch.from_numpy(v) for k, v in numpy_model.state_dict().items()})
    return config, numpy_model, pytorch_model


def forward_backward(numpy_model, pytorch_model, tokens):
    x, y = tokens[:, :-1], tokens[:, 1:]
    loss = lm_loss(numpy_model, x, y)
    loss.backward()
    logits = pytorch_model(torch.from_numpy(x))  # (B, T, vocab)
    targets = torch.from_numpy(y).reshape(-1)
    torch_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
    torch_loss.backward()
    return numpy_model(x).data, logits.detach().numpy(), loss.item(), torch_loss.item()


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-8), (np.float32, 1e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_weights_same_logits_and_gradients(name, dtype, tolerance):
    config, numpy_model, pytorch_model = both_models(name, dtype)
    tokens = np.random.default_rng(1).integers(0, config.vocab_size, (2, 41))  # 40 positions > 16: scaled RoPE
    numpy_logits, torch_logits, numpy_loss, torch_loss = forward_backward(numpy_model, pytorch_model, tokens)
    assert numpy_logits.dtype == torch_logits.dtype == dtype
    assert relative_error(numpy_logits, torch_logits) < tolerance
    assert numpy_loss == pytest.approx(torch_loss, rel=tolerance)
    torch_parameters = dict(pytorch_model.named_parameters())
    assert sorted(torch_parameters) == sorted(name for name, _ in numpy_model.named_parameters())
    for param_name, param in numpy_model.named_parameters():
        error = relative_error(param.grad, torch_parameters[param_name].grad.numpy())
        assert error < tolerance, f"gradient of {param_name}: relative error {error:.2e}"


def test_pytorch_state_dict_loads_into_the_numpy_model():
    config = get_preset("nano")
    torch.manual_seed(0)
    pytorch_model = torch_model.Llama(config)
    numpy_model = Llama(config)
    numpy_model.load_state_dict({k: v.numpy() for k, v in pytorch_model.state_dict().items()})
    tokens = np.random.default_rng(2).integers(0, config.vocab_size, (1, 12))
    with torch.no_grad():
        expected = pytorch_model(torch.from_numpy(tokens)).numpy()
    assert relative_error(numpy_model(tokens).data, expected) < 1e-5


def test_rope_frequencies_and_scaling_agree():
    config = get_preset("llama3.1-8b")
    unscaled = rope_frequencies(get_preset("llama3-8b"))
    scaled_by_torch = torch_rope.apply_rope_scaling(torch.from_numpy(unscaled)).numpy()
    np.testing.assert_allclose(apply_rope_scaling(unscaled), scaled_by_torch, rtol=1e-15)
    np.testing.assert_allclose(rope_frequencies(config), torch_rope.rope_frequencies(config).numpy(), rtol=1e-6)
    table = torch_rope.precompute_freqs_cis(config, 64).numpy()  # float32 angles: about 1e-5 rad at position 63
    np.testing.assert_allclose(precompute_freqs_cis(config, 64), table, atol=5e-5)
