"""Post-training quantization for inference: int8 and int4 weight-only, and FP8 row-wise as Llama 3.1 serves 405B.

Decoding one token reads every weight once, so at batch 1 its speed is set by bytes moved, not FLOPs: storing a
weight in 8 or 4 bits instead of 16 or 32 shrinks both the memory and the time. Three schemes, each a pure
quantize/dequantize pair plus a module that replaces ``nn.Linear``:

- ``int8``: one scale per output channel (row of ``W``), symmetric: ``s = amax(|row|) / 127``, ``q = round(w / s)``.
- ``int4``: one scale per group of ``group_size`` consecutive inputs of a row (32, 64 or 128): symmetric
  (``s = amax / 7``, ``q`` in ``[-8, 7]``) or asymmetric (``s = (max - min) / 15``, an integer zero point, ``q`` in
  ``[0, 15]``); two values are packed per byte.
- ``fp8``: Llama 3.1's recipe (Grattafiori et al. 2024, section 6.2): e4m3 weights with one scale per row, and the
  activations cast to e4m3 at run time with one scale per token (row), that token's ``amax`` capped at
  :data:`FP8_ACTIVATION_AMAX_BOUND` (1200) so an outlier token cannot crush the others' resolution. Only the
  feed-forward linears are quantized, and not those of the first and last blocks; attention stays in high
  precision. Emulated: the e4m3 values and scales are real (torch's ``float8_e4m3fn``), the matmul runs in fp32.

In every scheme the rounding error of a weight is at most half a quantization step (``s / 2``; for e4m3, half a
unit in the last place), the bound the tests check. int8 and int4 quantize the seven linears of every block; the
embedding, the norms and the output head stay in high precision. Weight-only: activations stay in float. int8
on a CPU runs PyTorch's ``torch._weight_int8pack_mm`` kernel; otherwise the weights are dequantized inside
``forward`` (a fused GPU kernel does this in registers). So here every scheme saves memory but none saves time: at
batch 1 on our CPU even the int8 kernel is slower than the float32 matmul (``bench/decode_bench.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minillama.errors import UserError

__all__ = ["FP8_ACTIVATION_AMAX_BOUND", "FP8_LINEARS", "INT_LINEARS", "Float8RowwiseLinear", "QuantConfig",
           "QuantizedLinear", "dequantize_int4", "dequantize_int8", "footprint_bytes", "parse_scheme",
           "load_quantized", "quantize_fp8_rowwise", "quantize_int4", "quantize_int8", "quantize_model"]

INT_LINEARS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
               "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
"""The linears of a block that int8 and int4 quantize (all seven)."""

FP8_LINEARS = ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
"""The linears that FP8 quantizes, as in Llama 3.1: the feed-forward network only, never self-attention."""

FP8_ACTIVATION_AMAX_BOUND = 1200.0
"""Llama 3.1's upper bound on the dynamic scaling: a token's ``amax`` is capped at this before its scale is set."""

E4M3 = torch.float8_e4m3fn


@dataclass(frozen=True)
class QuantConfig:
    """A quantization scheme: ``"int8"``, ``"int4"`` (with ``group_size`` and ``symmetric``) or ``"fp8"``."""

    scheme: str
    """``int8`` (per output channel), ``int4`` (group-wise) or ``fp8`` (e4m3, row-wise, Llama 3.1)."""
    group_size: int = 128
    """int4 only: inputs per scale."""
    symmetric: bool = True
    """int4 only: zero maps to zero (no zero point), or an asymmetric range with an integer zero point."""

    def __post_init__(self) -> None:
        if self.scheme not in ("int8", "int4", "fp8"):
            raise UserError(f"unknown quantization scheme {self.scheme!r}; choose int8, int4 (int4-g32, int4-g64, "
                            f"int4-g128, with -asym for a zero point) or fp8")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 2 \
                or self.group_size % 2:
            raise UserError(f"group size must be an even integer >= 2 (32, 64 or 128), got {self.group_size!r}")


def parse_scheme(spec: str | QuantConfig) -> QuantConfig:
    """``QuantConfig`` from its command-line spelling.

    ``"int8"`` -> int8; ``"int4"`` -> int4, group 128, symmetric; ``"int4-g32-asym"`` -> group 32 with a zero point;
    ``"fp8"`` -> FP8 row-wise.
    """
    if isinstance(spec, QuantConfig):
        return spec
    match = re.fullmatch(r"int4(?:-g(\d+))?(-asym)?", spec)
    if match:
        group = int(match.group(1)) if match.group(1) else 128
        return QuantConfig("int4", group_size=group, symmetric=not match.group(2))
    return QuantConfig(spec)


# --- int8: one scale per output channel ----------------------------------------------------------------------------


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)``: int8 ``q`` (out, in) and one scale per row (out,), with ``weight ~= q * scale[:, None]``.

    Example: the row ``[0.5, -1.27, 0.0]`` has ``amax = 1.27``, so ``s = 0.01`` and ``q = [50, -127, 0]``.
    """
    amax = weight.detach().abs().amax(dim=1).float()  # (out,)
    scale = (amax / 127).clamp(min=1e-12)  # an all-zero row gets a tiny scale and q = 0
    q = torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)  # (out, in)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``q * scale`` row by row: (out, in) float32."""
    return q.float() * scale[:, None]


# --- int4: group-wise, symmetric or with a zero point, two values per byte -----------------------------------------


def _check_groups(in_features: int, group_size: int, name: str = "the weight") -> None:
    if in_features % group_size:
        fits = [g for g in (32, 64, 128) if in_features % g == 0]
        hint = f"choose one of {', '.join(f'int4-g{g}' for g in fits)}" if fits else "quantize with int8"
        raise UserError(f"int4 group size {group_size} does not divide the {in_features} input features of "
                        f"{name}: {hint}")


def quantize_int4(weight: torch.Tensor, group_size: int = 128, symmetric: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(packed, scale, zero)``: 4-bit codes packed two per byte (out, in / 2) uint8, one scale per group
    (out, in / group_size), and the integer zero points (same shape, uint8) or ``None`` when symmetric.

    Symmetric: ``s = amax / 7``, ``q = clamp(round(w / s), -8, 7)``, stored as ``q + 8``. Asymmetric:
    ``s = (max - min) / 15``, ``z = round(-min / s)``, ``q = clamp(round(w / s) + z, 0, 15)``, ``w ~= (q - z) s``.
    Example (symmetric, one group): ``[0.7, -0.35, 0.1]`` -> ``s = 0.1``, ``q = [7, -4, 1]``.
    """
    out_features, in_features = weight.shape
    _check_groups(in_features, group_size)
    groups = weight.detach().float().view(out_features, in_features // group_size, group_size)  # (out, G, g)
    if symmetric:
        scale = (groups.abs().amax(dim=2) / 7).clamp(min=1e-12)  # (out, G)
        zero = torch.full_like(scale, 8.0)  # the stored code of 0
        q = torch.round(groups / scale[..., None]).clamp(-8, 7) + 8
    else:
        low = groups.amin(dim=2).clamp(max=0)  # the range always contains 0, so 0 is exact (padding, pruned)
        high = groups.amax(dim=2).clamp(min=0)
        scale = ((high - low) / 15).clamp(min=1e-12)
        zero = torch.round(-low / scale).clamp(0, 15)
        q = (torch.round(groups / scale[..., None]) + zero[..., None]).clamp(0, 15)
    codes = q.to(torch.uint8).view(out_features, in_features)  # (out, in), values 0..15
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)  # (out, in) -> (out, in / 2)
    return packed, scale, None if symmetric else zero.to(torch.uint8)


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None) -> torch.Tensor:
    """Inverse of :func:`quantize_int4`: (out, in) float32."""
    out_features, half = packed.shape
    codes = torch.stack([packed & 0xF, packed >> 4], dim=2).view(out_features, 2 * half)  # (out, in / 2) -> (out, in)
    n_groups = scale.shape[1]
    groups = codes.view(out_features, n_groups, -1).float()  # (out, G, g)
    zero_point = torch.full_like(scale, 8.0) if zero is None else zero.float()
    return ((groups - zero_point[..., None]) * scale[..., None]).view(out_features, 2 * half)


# --- fp8 e4m3, row-wise -------------------------------------------------------------------------------------------


def quantize_fp8_rowwise(x: torch.Tensor, amax_bound: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_fp8, scale)``: e4m3 values and one scale per row (the last dimension), ``x ~= x_fp8 * scale``.

    Each row's largest magnitude, capped at ``amax_bound`` if given, is mapped onto e4m3's largest value, 448;
    entries beyond the cap saturate at +-448. Example: the row ``[2.0, -0.5]`` has ``scale = 2 / 448`` and comes
    back exactly; with ``amax_bound=1.0`` the scale is ``1 / 448`` and ``2.0`` saturates to ``1.0``.
    """
    largest = torch.finfo(E4M3).max  # 448
    amax = x.detach().abs().amax(dim=-1, keepdim=True).float()  # (..., 1)
    if amax_bound is not None:
        amax = amax.clamp(max=amax_bound)
    scale = (amax / largest).clamp(min=1e-12)
    return (x.float() / scale).clamp(-largest, largest).to(E4M3), scale


# --- the modules --------------------------------------------------------------------------------------------------


class QuantizedLinear(nn.Module):
    """A bias-free ``nn.Linear`` with int8 or int4 weights, dequantized at each call (weight-only quantization)."""

    def __init__(self, linear: nn.Linear, config: QuantConfig, name: str = "the weight"):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.config = config
        if config.scheme == "int8":
            q, scale = quantize_int8(linear.weight)
            zero = None
        else:
            _check_groups(linear.in_features, config.group_size, name)
            q, scale, zero = quantize_int4(linear.weight, config.group_size, config.symmetric)
        dtype = linear.weight.dtype  # scales are kept in the model's dtype
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale.to(dtype))
        self.register_buffer("zero", zero)

    def dequantized_weight(self) -> torch.Tensor:
        """The weight this layer computes with, (out, in), in the scales' dtype."""
        scale = self.scale.float()
        if self.config.scheme == "int8":
            return dequantize_int8(self.qweight, scale).to(self.scale.dtype)
        return dequantize_int4(self.qweight, scale, self.zero).to(self.scale.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.scheme == "int8" and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16):
            # PyTorch's CPU kernel multiplies by the int8 weight directly, never materializing it in float
            rows = x.reshape(-1, self.in_features)  # (..., in) -> (N, in)
            y = torch._weight_int8pack_mm(rows, self.qweight, self.scale.to(x.dtype))  # (N, out)
            return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.dequantized_weight().to(x.dtype))  # (..., in) -> (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.config}"


class Float8RowwiseLinear(nn.Module):
    """Llama 3.1's FP8 linear: e4m3 weights with per-row scales, activations cast per token with a capped scale.

    ``y = (x_fp8 * s_x) @ (W_fp8 * s_w)^T``, computed in fp32 here (on an H100 ``torch._scaled_mm`` does it in one
    FP8 kernel), then cast back to ``x``'s dtype.
    """

    def __init__(self, linear: nn.Linear, amax_bound: float = FP8_ACTIVATION_AMAX_BOUND):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.amax_bound = amax_bound
        weight_fp8, weight_scale = quantize_fp8_rowwise(linear.weight)  # (out, in), (out, 1)
        self.register_buffer("qweight", weight_fp8)
        self.register_buffer("scale", weight_scale.to(linear.weight.dtype))

    def dequantized_weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_fp8, x_scale = quantize_fp8_rowwise(x, self.amax_bound)  # (..., in), (..., 1)
        y = F.linear(x_fp8.float() * x_scale, self.dequantized_weight())  # (..., in) -> (..., out)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3 rowwise"


def _targets(model: nn.Module, config: QuantConfig) -> list[str]:
    """Names of the linears ``config`` quantizes, e.g. ``layers.0.attention.wq``."""
    n_layers = len(model.layers)
    names = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if not (isinstance(module, nn.Linear) and len(parts) == 4 and parts[0] == "layers"):
            continue
        kind, layer = ".".join(parts[2:]), int(parts[1])
        if config.scheme == "fp8":
            if kind in FP8_LINEARS and 0 < layer < n_layers - 1:  # first and last blocks stay in high precision
                names.append(name)
        elif kind in INT_LINEARS:
            names.append(name)
    return names


@torch.no_grad()
def quantize_model(model: nn.Module, scheme: str | QuantConfig) -> nn.Module:
    """Replace the block linears of ``model`` (a ``Llama``) by quantized ones, in place; returns ``model``.

    ``scheme``: a :class:`QuantConfig` or its spelling (``"int8"``, ``"int4-g64"``, ``"int4-g32-asym"``,
    ``"fp8"``). Every group size is checked before anything changes, so a refused scheme leaves the model whole.
    The result generates like the float model; it is for inference (its buffers are not trainable).
    """
    config = parse_scheme(scheme)
    names = _targets(model, config)
    if not names:
        raise UserError(f"{config.scheme} quantizes nothing in this model: fp8 needs at least 3 blocks (the first "
                        f"and last stay in high precision); the model has {len(model.layers)}")
    if config.scheme == "int4":
        for name in names:
            _check_groups(model.get_submodule(name).in_features, config.group_size, name)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        new = Float8RowwiseLinear(linear) if config.scheme == "fp8" else QuantizedLinear(linear, config, name)
        setattr(parent, child, new)
    return model


def footprint_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (what its weights occupy in memory); a tied tensor counts once."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def load_quantized(path, scheme: str | QuantConfig, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> tuple[nn.Module, dict[str, int]]:
    """A quantized ``Llama`` from a checkpoint folder, and its footprint: ``{"float_bytes": ..., "bytes": ...}``.

    The checkpoint is loaded in float (any format :func:`minillama.weights.load_checkpoint` reads), measured, then
    quantized in place, so the peak memory is the float model's.
    """
    from minillama.weights import load_checkpoint

    model = load_checkpoint(path, device=device, dtype=dtype)
    float_bytes = footprint_bytes(model)
    quantize_model(model, scheme)
    return model, {"float_bytes": float_bytes, "bytes": footprint_bytes(model)}
