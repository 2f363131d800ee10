"""Our int8 and int4 quantization against torchao's, an independent implementation (skipped without torchao).

Two levels. torchao's affine primitives (``choose_qparams_affine`` / ``quantize_affine`` / ``dequantize_affine``),
given the same code range, must give *exactly* our scales, codes and dequantized weights. torchao's end-to-end
workflow ``quantize_(model, Int8WeightOnlyConfig())`` differs in one constant: its symmetric scale is
``amax / 127.5`` with codes in [-128, 127], ours ``amax / 127`` in [-127, 127]; so its dequantized weights are
within one of our steps of ours, and its logits within a stated tolerance. torchao's int4 workflow needs CUDA
(tinygemm) or the mslk package, so int4 is checked through the primitives only.
"""

from __future__ import annotations

import pytest
import torch

torchao = pytest.importorskip("torchao", reason="torchao is not installed (pip install torchao): the independent "
                                                "reference for int8/int4 quantization")
primitives = pytest.importorskip("torchao.quantization.quant_primitives")

from minillama.config import get_preset  # noqa: E402
from minillama.model import Llama  # noqa: E402
from minillama.quantize import (  # noqa: E402
    INT_LINEARS,
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8,
    quantize_model,
)


def weight(seed: int = 0) -> torch.Tensor:
    w = torch.randn(96, 192, generator=torch.Generator().manual_seed(seed))
    w[0] *= 30  # an outlier row
    return w


def torchao_affine(w: torch.Tensor, group_size: int, symmetric: bool, quant_min: int, quant_max: int):
    mapping = primitives.MappingType.SYMMETRIC if symmetric else primitives.MappingType.ASYMMETRIC
    dtype = torch.int8 if symmetric else torch.uint8
    block = (1, group_size)
    scale, zero = primitives.choose_qparams_affine(w, mapping, block, dtype, quant_min, quant_max)
    codes = primitives.quantize_affine(w, block, scale, zero, dtype, quant_min, quant_max)
    return scale, zero, codes, primitives.dequantize_affine(codes, block, scale, zero, dtype, quant_min, quant_max)


def test_int8_per_channel_equals_torchaos_primitives():
    w = weight()
    q, scale = quantize_int8(w)
    ao_scale, _, ao_codes, ao_back = torchao_affine(w, w.shape[1], True, -127, 127)
    torch.testing.assert_close(scale, ao_scale.flatten(), rtol=0, atol=0)
    assert torch.equal(q, ao_codes)
    torch.testing.assert_close(dequantize_int8(q, scale), ao_back, rtol=0, atol=0)


@pytest.mark.parametrize("group_size", [32, 64])
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_groupwise_equals_torchaos_primitives(group_size, symmetric):
    w = weight(seed=1)
    packed, scale, zero = quantize_int4(w, group_size, symmetric)
    # symmetric: the scale is amax / 7 (torchao's amax / ((max - min) / 2) with the range [-7, 7]); ours also
    # allows -8 but never produces it. Asymmetric: torchao's [0, 15] with an integer zero point, as ours.
    ao_scale, ao_zero, ao_codes, ao_back = torchao_affine(w, group_size, symmetric, -7 if symmetric else 0,
                                                          7 if symmetric else 15)
    torch.testing.assert_close(scale, ao_scale, rtol=0, atol=0)
    if not symmetric:
        assert torch.equal(zero.int(), ao_zero.int())
    torch.testing.assert_close(dequantize_int4(packed, scale, zero), ao_back, rtol=0, atol=1e-7)


def block_linear(module: torch.nn.Module, fqn: str) -> bool:
    return isinstance(module, torch.nn.Linear) and fqn.split(".", 2)[-1] in INT_LINEARS


def test_int8_weight_only_model_agrees_with_torchaos_workflow():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    torch.manual_seed(0)
    float_model = Llama(get_preset("nano", n_layers=3)).eval()
    ours = Llama(float_model.config).eval()
    ours.load_state_dict(float_model.state_dict())
    theirs = Llama(float_model.config).eval()
    theirs.load_state_dict(float_model.state_dict())
    quantize_model(ours, "int8")
    quantize_(theirs, Int8WeightOnlyConfig(), filter_fn=block_linear)
    for name, module in ours.named_modules():
        if isinstance(module, QuantizedLinear):
            their_weight = theirs.get_submodule(name).weight.dequantize()
            step = module.scale[:, None]  # (out, 1): one of our quantization steps
            assert ((module.dequantized_weight() - their_weight).abs() <= step * (1 + 1e-5)).all(), name
    tokens = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference, logits_ours, logits_theirs = float_model(tokens), ours(tokens), theirs(tokens)
    difference = (logits_ours - logits_theirs).norm() / reference.norm()
    error_ours = (logits_ours - reference).norm() / reference.norm()
    error_theirs = (logits_theirs - reference).norm() / reference.norm()
    assert difference < 0.01  # the stated tolerance: 1% of the logits' norm
    assert error_ours < 0.01 and error_theirs < 0.01
