"""The parts of a Llama 3 block on ``minillama.autograd``: grouped-query attention with RoPE, the SwiGLU
feed-forward layer, and the pre-norm residual block that joins them (chapters 3 and 4).

Names follow Meta's reference ``llama/model.py`` (``wq wk wv wo``, ``w1 w2 w3``, ``attention_norm``, ``ffn_norm``),
so the dotted parameter names of a model built from these modules are those of Meta's checkpoints. RMSNorm is
``minillama.autograd.nn.RMSNorm`` (a fused op with a hand-derived backward, chapter 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minillama.autograd import Tensor, nn
from minillama.autograd import functional as F
from minillama.config import ModelConfig

from .rope import apply_rotary_emb


class Attention(nn.Module):
    """Causal self-attention {cite}`vaswani2017attention` with RoPE {cite}`su2021roformer` and grouped-query
    attention {cite}`ainslie2023gqa`.

    ``n_heads`` query heads share ``n_kv_heads`` key/value heads: query head ``h`` reads key/value head
    ``h // n_rep`` with ``n_rep = n_heads // n_kv_heads`` (Meta's ``repeat_kv`` order). Instead of copying each
    key/value head ``n_rep`` times, the queries are grouped as ``(B, H_kv, n_rep, T, D)`` and the keys and values
    ``(B, H_kv, 1, S, D)`` broadcast over the group axis: the same numbers, without the copies. With
    ``n_kv_heads == n_heads`` this is ordinary multi-head attention; with ``n_kv_heads == 1``, multi-query attention
    {cite}`shazeer2019mqa`.
    """

    def __init__(self, config: ModelConfig, dtype: Any = np.float32):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False, dtype=dtype)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False, dtype=dtype)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False, dtype=dtype)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False, dtype=dtype)

    def forward(self, x: Tensor, freqs_cis: np.ndarray) -> Tensor:
        B, T, _ = x.shape  # batch, time, dim
        H, H_kv, D = self.n_heads, self.n_kv_heads, self.head_dim
        n_rep = H // H_kv
        q = self.wq(x).reshape(B, T, H, D)  # (B, T, H*D) -> (B, T, H, D)
        k = self.wk(x).reshape(B, T, H_kv, D)
        v = self.wv(x).reshape(B, T, H_kv, D)
        q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
        q = q.reshape(B, T, H_kv, n_rep, D).permute(0, 2, 3, 1, 4)  # (B, T, H, D) -> (B, H_kv, n_rep, T, D)
        k = k.permute(0, 2, 1, 3).reshape(B, H_kv, 1, T, D)  # (B, T, H_kv, D) -> (B, H_kv, 1, T, D)
        v = v.permute(0, 2, 1, 3).reshape(B, H_kv, 1, T, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H_kv, n_rep, T, D)
        y = y.permute(0, 3, 1, 2, 4).reshape(B, T, H * D)  # (B, H_kv, n_rep, T, D) -> (B, T, H*D)
        return self.wo(y)


class FeedForward(nn.Module):
    """The SwiGLU feed-forward layer {cite}`shazeer2020glu`: ``w2(silu(w1 x) * w3 x)``.

    ``w1`` and ``w3`` map ``dim -> ffn_hidden_dim``, ``w2`` maps back. The gate ``silu(w1 x)`` multiplies the
    linear "value" ``w3 x`` elementwise; the hidden size is about ``8/3 dim`` (times Llama 3's multiplier) so the
    three matrices cost what the two of a ``4 dim`` GELU MLP do (:func:`minillama.config.ffn_hidden_size`).
    """

    def __init__(self, config: ModelConfig, dtype: Any = np.float32):
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.ffn_hidden_dim, bias=False, dtype=dtype)
        self.w2 = nn.Linear(config.ffn_hidden_dim, config.dim, bias=False, dtype=dtype)
        self.w3 = nn.Linear(config.dim, config.ffn_hidden_dim, bias=False, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (B, T, dim) -> (B, T, hidden) -> (B, T, dim)


class TransformerBlock(nn.Module):
    """A pre-norm residual block {cite}`xiong2020prenorm`: ``h = x + attention(norm(x))``, ``out = h + ffn(norm(h))``.

    The residual stream ``x`` is never normalised itself, only the inputs of the two sublayers, so gradients reach
    the early layers through the identity paths {cite}`he2016resnet`.
    """

    def __init__(self, config: ModelConfig, dtype: Any = np.float32):
        super().__init__()
        self.attention = Attention(config, dtype=dtype)
        self.feed_forward = FeedForward(config, dtype=dtype)
        self.attention_norm = nn.RMSNorm(config.dim, eps=config.norm_eps, dtype=dtype)
        self.ffn_norm = nn.RMSNorm(config.dim, eps=config.norm_eps, dtype=dtype)

    def forward(self, x: Tensor, freqs_cis: np.ndarray) -> Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis)
        return h + self.feed_forward(self.ffn_norm(h))
