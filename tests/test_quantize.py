"""Quantization against the math: round-trip error bounds, hand-worked examples, memory by hand, logits, the CLI."""

from __future__ import annotations

import pytest
import torch

from minillama.cli import main
from minillama.config import get_preset
from minillama.errors import UserError
from minillama.generate import generate
from minillama.model import Llama
from minillama.quantize import (
    FP8_ACTIVATION_AMAX_BOUND,
    Float8RowwiseLinear,
    QuantConfig,
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    footprint_bytes,
    load_quantized,
    parse_scheme,
    quantize_fp8_rowwise,
    quantize_int4,
    quantize_int8,
    quantize_model,
)
from minillama.weights import save_checkpoint


def weight(out_features: int = 48, in_features: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(out_features, in_features, generator=generator)
    w[0] *= 50  # an outlier row: its scale must not leak into the others
    w[1, :7] = 0  # a partly zero row
    w[2] = 0  # an all-zero row
    return w


def nano_model(n_layers: int = 3, seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    return Llama(get_preset("nano", n_layers=n_layers)).eval()


def test_int8_hand_example_and_half_step_bound():
    q, scale = quantize_int8(torch.tensor([[0.5, -1.27, 0.0]]))
    assert q.dtype == torch.int8 and q.tolist() == [[50, -127, 0]]
    torch.testing.assert_close(scale, torch.tensor([0.01]))
    w = weight()
    q, scale = quantize_int8(w)
    error = (dequantize_int8(q, scale) - w).abs()  # (out, in)
    step = scale[:, None]
    assert (error <= step / 2 + 1e-6 * w.abs()).all()  # rounding to the nearest step
    assert (error[3:].amax(dim=1) > 0.4 * scale[3:]).all()  # ... and the bound is nearly reached: it is not loose
    assert (dequantize_int8(q, scale)[2] == 0).all() and (dequantize_int8(q, scale)[1, :7] == 0).all()
    torch.testing.assert_close(q.abs().amax(dim=1)[3:].float(), torch.full((45,), 127.0))


@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_round_trip_within_half_a_step_of_its_group(group_size, symmetric):
    w = weight()
    packed, scale, zero = quantize_int4(w, group_size, symmetric)
    assert packed.dtype == torch.uint8 and packed.shape == (48, 128)  # two codes per byte
    assert scale.shape == (48, 256 // group_size) and (zero is None) == symmetric
    back = dequantize_int4(packed, scale, zero)
    step = scale.repeat_interleave(group_size, dim=1)  # (out, G) -> (out, in)
    error = (back - w).abs()
    assert (error <= step / 2 + 1e-5 * w.abs()).all()
    assert error.amax() > 0.4 * step[3:].amin()
    assert (back[2] == 0).all()  # zero is exact in both schemes
    assert (back[1, :7] == 0).all()


def test_int4_hand_examples():
    packed, scale, zero = quantize_int4(torch.tensor([[0.7, -0.35, 0.1, 0.0]]), group_size=4)
    torch.testing.assert_close(scale, torch.tensor([[0.1]]))
    codes = [int(packed[0, 0]) & 0xF, int(packed[0, 0]) >> 4, int(packed[0, 1]) & 0xF, int(packed[0, 1]) >> 4]
    assert codes == [7 + 8, -4 + 8, 1 + 8, 0 + 8]  # q + 8, low nibble first
    # Asymmetric: range [-0.3, 1.2] -> s = 0.1, z = 3: -0.3 -> 0, 1.2 -> 15, 0.0 -> 3.
    packed, scale, zero = quantize_int4(torch.tensor([[-0.3, 1.2, 0.0, 0.5]]), group_size=4, symmetric=False)
    torch.testing.assert_close(scale, torch.tensor([[0.1]]))
    assert zero.tolist() == [[3]]
    torch.testing.assert_close(dequantize_int4(packed, scale, zero), torch.tensor([[-0.3, 1.2, 0.0, 0.5]]))


def test_fp8_rowwise_relative_error_and_the_amax_bound():
    w = weight()
    x_fp8, scale = quantize_fp8_rowwise(w)
    assert x_fp8.dtype == torch.float8_e4m3fn and scale.shape == (48, 1)
    back = x_fp8.float() * scale
    # e4m3 has 3 mantissa bits: half a unit in the last place is 2^-4 of a normal value; subnormals: 2^-10 * scale
    assert ((back - w).abs() <= w.abs() * 2**-4 + scale * 2**-10 + 1e-7).all()
    torch.testing.assert_close(back.abs().amax(dim=1)[3:], w.abs().amax(dim=1)[3:])  # amax maps exactly to 448
    row = torch.tensor([[2.0, -0.5]])
    x_fp8, scale = quantize_fp8_rowwise(row)
    torch.testing.assert_close(x_fp8.float() * scale, row)
    x_fp8, scale = quantize_fp8_rowwise(row, amax_bound=1.0)  # the cap: 2.0 saturates to 1.0
    torch.testing.assert_close(x_fp8.float() * scale, torch.tensor([[1.0, -0.5]]))


def test_schemes_are_parsed_and_bad_ones_refused():
    assert parse_scheme("int8") == QuantConfig("int8")
    assert parse_scheme("int4") == QuantConfig("int4", group_size=128, symmetric=True)
    assert parse_scheme("int4-g32-asym") == QuantConfig("int4", group_size=32, symmetric=False)
    with pytest.raises(UserError, match="unknown quantization scheme 'int3'"):
        parse_scheme("int3")
    with pytest.raises(UserError, match="group size"):
        parse_scheme("int4-g0")


def test_a_group_size_that_does_not_divide_the_width_is_refused_and_the_model_kept():
    model = nano_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"group size 128 does not divide the 64 input features of "
                                        r"layers\.0\.attention\.wq: choose one of int4-g32, int4-g64"):
        quantize_model(model, "int4")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(UserError, match="fp8 quantizes nothing"):
        quantize_model(nano_model(n_layers=2), "fp8")


def test_fp8_follows_llama31_only_middle_feed_forwards():
    model = quantize_model(nano_model(n_layers=4), "fp8")
    fp8 = {name for name, module in model.named_modules() if isinstance(module, Float8RowwiseLinear)}
    assert fp8 == {f"layers.{i}.feed_forward.{w}" for i in (1, 2) for w in ("w1", "w2", "w3")}
    assert model.layers[1].feed_forward.w1.amax_bound == FP8_ACTIVATION_AMAX_BOUND


@pytest.mark.parametrize("scheme, tolerance", [("int8", 0.01), ("int4-g32", 0.12), ("int4-g32-asym", 0.12),
                                               ("fp8", 0.03)])
def test_quantized_logits_close_to_float_and_equal_to_the_dequantized_model(scheme, tolerance):
    model = nano_model()
    tokens = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(tokens)
        quantized = quantize_model(model, scheme)
        logits = quantized(tokens)
    relative = (logits - reference).norm() / reference.norm()
    assert 0 < relative < tolerance
    if scheme != "fp8":  # weight-only: exactly the float model with the dequantized weights
        float_again = nano_model()
        state = float_again.state_dict()
        for name, module in quantized.named_modules():
            if isinstance(module, QuantizedLinear):
                state[name + ".weight"] = module.dequantized_weight()
        float_again.load_state_dict(state)
        with torch.no_grad():
            torch.testing.assert_close(float_again(tokens), logits, rtol=1e-5, atol=1e-6)


def test_int8_cpu_kernel_equals_the_dequantized_matmul():
    linear = torch.nn.Linear(64, 96, bias=False)
    layer = QuantizedLinear(linear, QuantConfig("int8"))
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(layer(x), x @ layer.dequantized_weight().T, rtol=1e-5, atol=1e-5)
    assert (layer(x) - linear(x)).abs().max() > 0  # quantized: close, not equal


def test_footprint_by_hand():
    # nano with 3 layers: dim 64, 4 heads of 16, 2 kv heads, ffn 192, vocab 256, untied output.
    # (out, in) of wq wk wv wo w1 w2 w3
    linears = [(64, 64), (32, 64), (32, 64), (64, 64), (192, 64), (64, 192), (192, 64)]
    block_weights = sum(o * i for o, i in linears)  # 49,152
    outputs = sum(o for o, _ in linears)  # 640 rows
    rest = 256 * 64 * 2 + 3 * 2 * 64 + 64  # embedding, output head, 6 block norms, final norm
    model = nano_model()
    assert footprint_bytes(model) == 4 * (3 * block_weights + rest) == 722_688
    assert footprint_bytes(quantize_model(nano_model(), "int8")) == 3 * (block_weights + 4 * outputs) + 4 * rest
    groups = sum(o * i // 32 for o, i in linears)
    int4_sym = 3 * (block_weights // 2 + 4 * groups) + 4 * rest
    assert footprint_bytes(quantize_model(nano_model(), "int4-g32")) == int4_sym
    assert footprint_bytes(quantize_model(nano_model(), "int4-g32-asym")) == int4_sym + 3 * groups  # uint8 zeros
    ffn = 3 * 192 * 64  # w1, w2, w3 of block 1, the only middle block: fp32 -> one byte, plus a scale per row
    fp8 = 4 * (3 * block_weights + rest) - 4 * ffn + ffn + 4 * (192 + 64 + 192)
    assert footprint_bytes(quantize_model(nano_model(), "fp8")) == fp8


def test_load_quantized_and_the_cli(tmp_path, capsys):
    from minillama.tokenizer.bpe import BPETokenizer

    model = nano_model()
    tokenizer = BPETokenizer()  # 256 byte tokens: nano's vocabulary
    tokenizer.save(tmp_path / "tok.model")
    save_checkpoint(model, tmp_path / "ckpt", tokenizer_file=tmp_path / "tok.model")
    quantized, sizes = load_quantized(tmp_path / "ckpt", "int4-g64")
    assert sizes == {"float_bytes": footprint_bytes(model), "bytes": footprint_bytes(quantized)}
    assert sizes["bytes"] < sizes["float_bytes"] / 2
    args = ["generate", str(tmp_path / "ckpt"), "--prompt", "Hi", "--max-new-tokens", "12", "--temperature", "0"]
    assert main(args + ["--quantize", "int4-g64"]) == 0
    expected = generate(quantized, tokenizer.encode("Hi"), 12, temperature=0)[0].tolist()
    assert capsys.readouterr().out == tokenizer.decode(expected) + "\n"
    assert main(args + ["--quantize", "int4"]) == 2
    assert "error: int4 group size 128 does not divide" in capsys.readouterr().err
    assert main(args + ["--quantize", "int2"]) == 2
    assert "unknown quantization scheme 'int2'" in capsys.readouterr().err
