"""Rotary position embeddings (RoPE, Su et al. 2021) in Meta's convention, with Llama 3.1's frequency scaling.

RoPE rotates each pair of adjacent features ``(x[2j], x[2j+1])`` of a query or key head, read as the complex number
``x[2j] + i x[2j+1]``, by the angle ``m * theta_j`` at position ``m``, with ``theta_j = rope_theta ** (-2j / D)``.
A dot product between a query at position ``m`` and a key at position ``n`` then depends only on ``m - n``.

Meta's reference code stores the rotations as a complex64 tensor ``freqs_cis = exp(i m theta_j)`` and multiplies
complex numbers. We keep exactly that layout (adjacent pairs, not Hugging Face's "rotate half" split) and that
complex product; the rotations are handed around as ``torch.view_as_real(freqs_cis)``, the (cos, sin) pairs in a
real tensor, which moves between devices and dtypes like any other tensor.

Precision: for bf16, fp16 and fp32 models everything is float32 (complex64), as in Meta's code, so the angles round
exactly as theirs do; a float64 model gets float64 angles and a complex128 product, which is what lets it agree with
the float64 numpy model of chapter 5 to round-off (~1e-15) instead of float32's ~1e-7.
"""

from __future__ import annotations

import math

import torch

from minillama.config import ModelConfig


def apply_rope_scaling(
    freqs: torch.Tensor,
    scale_factor: float = 8.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_seq_len: int = 8192,
) -> torch.Tensor:
    """Llama 3.1's long-context rescaling of the rotary frequencies (Meta's ``apply_scaling``).

    Wavelengths ``2 pi / freq`` shorter than ``original_max_seq_len / high_freq_factor`` (2048 tokens for 3.1) are
    kept; those longer than ``original_max_seq_len / low_freq_factor`` (8192) are stretched ``scale_factor`` times;
    in between, the frequency is interpolated linearly in ``original_max_seq_len / wavelength``. High frequencies
    carry local word order and are left alone; low frequencies, which never completed a turn in 8K-token
    pre-training, are slowed down so that 128K positions stay inside the angles the model has seen.
    """
    low_freq_wavelen = original_max_seq_len / low_freq_factor
    high_freq_wavelen = original_max_seq_len / high_freq_factor
    wavelen = 2 * math.pi / freqs
    smooth = (original_max_seq_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    interpolated = (1 - smooth) * freqs / scale_factor + smooth * freqs
    scaled = torch.where(wavelen > low_freq_wavelen, freqs / scale_factor, freqs)
    in_between = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(in_between, interpolated, scaled)


def rope_frequencies(config: ModelConfig, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``head_dim // 2`` rotary frequencies ``theta_j`` in ``dtype`` (float32 as Meta; float64 for a float64
    model), rescaled when ``config.use_scaled_rope``."""
    D = config.head_dim
    freqs = 1.0 / (config.rope_theta ** (torch.arange(0, D, 2, device=device, dtype=dtype)[: D // 2] / D))
    if config.use_scaled_rope:
        freqs = apply_rope_scaling(freqs, config.rope_scaling_factor, config.rope_low_freq_factor,
                                   config.rope_high_freq_factor, config.rope_original_max_seq_len)
    return freqs


def precompute_freqs_cis(
    config: ModelConfig, end: int, start: int = 0, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The rotations ``exp(i m theta_j)`` for positions ``start <= m < end``, as (cos, sin) pairs.

    Returns a ``dtype`` tensor of shape ``(end - start, head_dim // 2, 2)``: ``torch.view_as_real`` of Meta's complex
    ``freqs_cis``. Angles are computed in ``dtype``: float32 by default, as Meta does, so both models round
    identically; float64 for a float64 model (:class:`minillama.model.Llama` asks for the dtype of its weights,
    promoted to at least float32).

    Example: ``head_dim=2`` has one frequency ``theta_0 = 1``, so position ``m`` holds ``(cos m, sin m)``.
    """
    if not dtype.is_floating_point or torch.finfo(dtype).bits < 32:
        raise ValueError(f"rotary angles need float32 or float64 (angles up to ~1e5 rad), got {dtype}")
    freqs = rope_frequencies(config, device=device, dtype=dtype)
    positions = torch.arange(start, end, device=device, dtype=dtype)
    angles = torch.outer(positions, freqs)  # (T, D/2)
    return torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)  # (T, D/2, 2)


def apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Rotate each adjacent feature pair of ``x`` (B, T, H, D) by the angles in ``freqs_cis`` (T, D/2, 2).

    Meta's complex product ``(a + ib)(cos + i sin)``, computed in float32 (complex64) for bf16/fp16/fp32 inputs and
    in float64 (complex128) for float64 ones, and returned in ``x``'s dtype. The pairs are viewed as complex numbers
    in place (no copy), and one complex multiply is several times faster on CPU than the same arithmetic spelled out
    on the real and imaginary parts.
    """
    B, T, H, D = x.shape  # batch, time, heads, head dim
    compute = torch.promote_types(x.dtype, torch.float32)
    pairs = torch.view_as_complex(x.to(compute).reshape(B, T, H, D // 2, 2))  # (B, T, H, D) -> (B, T, H, D/2) complex
    rotations = torch.view_as_complex(freqs_cis.to(compute))[:, None, :]  # (T, D/2, 2) -> (T, 1, D/2) complex
    return torch.view_as_real(pairs * rotations).flatten(3).type_as(x)  # (B, T, H, D/2) -> (B, T, H, D)
