"""Rotary position embeddings (RoPE, {cite}`su2021roformer`) in numpy, in Meta's convention, with Llama 3.1 scaling.

RoPE encodes the position ``m`` of a query or key by rotating each pair of adjacent features ``(x[2j], x[2j+1])``,
read as the complex number ``x[2j] + i x[2j+1]``, by the angle ``m * theta_j``, with ``theta_j = rope_theta ** (-2j/D)``
(``D`` the head dimension). Rotations compose, so the dot product of a query rotated by ``m theta`` and a key rotated
by ``n theta`` depends on ``m - n`` only: attention sees relative positions, with no position vector added.

The pairing is Meta's (adjacent features, ``torch.view_as_complex`` in ``llama/model.py``), not Hugging Face's
"rotate half" split of a head into two halves; the two differ by a permutation of the ``wq``/``wk`` rows, which is
why converting checkpoints to Hugging Face permutes them (chapter 6).

This module is numpy only. The rotation tables are computed in float64 and cast to the model's dtype; the rotation
itself is one fused ``Function`` (a rotation's backward is the rotation by the opposite angle).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from minillama.autograd import Context, Function, Tensor
from minillama.config import ModelConfig


def apply_rope_scaling(
    freqs: np.ndarray,
    scale_factor: float = 8.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_seq_len: int = 8192,
) -> np.ndarray:
    """Llama 3.1's long-context rescaling of the rotary frequencies (Meta's ``apply_scaling``).

    A frequency ``f`` has wavelength ``2 pi / f`` tokens. With Llama 3.1's values (8192 tokens, factors 1 and 4):

    - wavelengths shorter than ``original_max_seq_len / high_freq_factor`` (2048 tokens) are kept: they turn many
      times inside the pre-training context and carry local word order;
    - wavelengths longer than ``original_max_seq_len / low_freq_factor`` (8192) are divided by ``scale_factor`` (8):
      they never completed a turn in 8K-token pre-training, and slowing them down keeps 128K positions inside the
      range of angles the model has seen;
    - in between, ``f`` is interpolated linearly between ``f / scale_factor`` and ``f`` in
      ``smooth = (original_max_seq_len / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)``.

    Example: a wavelength of 100 tokens is unchanged; one of 100,000 tokens becomes 800,000.
    """
    low_freq_wavelen = original_max_seq_len / low_freq_factor
    high_freq_wavelen = original_max_seq_len / high_freq_factor
    wavelen = 2 * np.pi / freqs
    smooth = (original_max_seq_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    interpolated = (1 - smooth) * freqs / scale_factor + smooth * freqs
    scaled = np.where(wavelen > low_freq_wavelen, freqs / scale_factor, freqs)
    in_between = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(in_between, interpolated, scaled)


def rope_frequencies(config: ModelConfig) -> np.ndarray:
    """The ``head_dim // 2`` rotary frequencies ``theta_j = rope_theta ** (-2j / head_dim)`` (float64, radians per
    token), rescaled by :func:`apply_rope_scaling` when ``config.use_scaled_rope``.

    Example: ``head_dim=4, rope_theta=10000`` gives ``[1, 0.01]``.
    """
    D = config.head_dim
    freqs = 1.0 / config.rope_theta ** (np.arange(0, D, 2, dtype=np.float64) / D)
    if config.use_scaled_rope:
        freqs = apply_rope_scaling(freqs, config.rope_scaling_factor, config.rope_low_freq_factor,
                                   config.rope_high_freq_factor, config.rope_original_max_seq_len)
    return freqs


def precompute_freqs_cis(config: ModelConfig, end: int, start: int = 0, dtype: Any = np.float32) -> np.ndarray:
    """The rotations ``exp(i m theta_j)`` for positions ``start <= m < end`` as (cos, sin) pairs.

    Shape ``(end - start, head_dim // 2, 2)``: the real view of Meta's complex ``freqs_cis`` (the layout of
    ``torch.view_as_real``). Angles are computed in float64 and the table is cast to ``dtype``.

    Example: ``head_dim=2`` has the single frequency ``theta_0 = 1``, so row ``m`` is ``[[cos m, sin m]]``.
    """
    return _freqs_cis(config, int(start), int(end), np.dtype(dtype))


@functools.lru_cache(maxsize=16)
def _freqs_cis(config: ModelConfig, start: int, end: int, dtype: np.dtype) -> np.ndarray:
    if not 0 <= start <= end:
        raise ValueError(f"need 0 <= start <= end for the rotary positions, got start={start}, end={end}")
    angles = np.outer(np.arange(start, end, dtype=np.float64), rope_frequencies(config))  # (T, D/2)
    table = np.stack((np.cos(angles), np.sin(angles)), axis=-1).astype(dtype)  # (T, D/2, 2)
    table.setflags(write=False)  # shared between calls through the cache
    return table


class RotaryEmbedding(Function):
    """Rotate each adjacent pair ``(a, b) = (x[..., 2j], x[..., 2j+1])`` by its angle:
    ``(a cos - b sin, a sin + b cos)``, the complex product ``(a + ib) e^{i angle}``.

    A rotation is orthogonal, so its vector-Jacobian product is the rotation by the opposite angle:
    ``(da, db) = (ga cos + gb sin, -ga sin + gb cos)``.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        a, b = x[..., 0::2], x[..., 1::2]  # (B, T, H, D/2) each: the real and imaginary parts
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        ctx.save_for_backward(cos, sin)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        cos, sin = ctx.saved_tensors
        grad_a, grad_b = grad[..., 0::2], grad[..., 1::2]
        grad_x = np.empty_like(grad)
        grad_x[..., 0::2] = grad_a * cos + grad_b * sin
        grad_x[..., 1::2] = grad_b * cos - grad_a * sin
        return grad_x, None, None


def apply_rotary_emb(x: Tensor, freqs_cis: np.ndarray) -> Tensor:
    """Rotate the queries or keys ``x`` (B, T, H, D) by the table ``freqs_cis`` (T, D/2, 2) of
    :func:`precompute_freqs_cis`: feature pair ``j`` of the token at time ``t`` turns by the angle of row ``t``."""
    B, T, H, D = x.shape  # batch, time, heads, head dim
    if freqs_cis.shape != (T, D // 2, 2):
        raise ValueError(f"rotary table has shape {freqs_cis.shape}; queries/keys of shape {x.shape} "
                         f"(B, T, H, D) need ({T}, {D // 2}, 2)")
    cos = freqs_cis[:, None, :, 0].astype(x.dtype, copy=False)  # (T, 1, D/2): broadcasts over the heads
    sin = freqs_cis[:, None, :, 1].astype(x.dtype, copy=False)
    return RotaryEmbedding.apply(x, cos, sin)
