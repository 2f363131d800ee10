"""Llama 3 in PyTorch: the numpy model of chapters 3-5, module for module, with Meta's parameter names.

The shape follows Meta's reference ``llama/model.py``: pure functions for the math (``minillama.rope``,
:func:`repeat_kv`), thin modules for state. Unlike the reference, the model is not an inference-only object: the
KV cache is a separate :class:`KVCache` passed to ``forward``, nothing is wrapped in ``inference_mode``, and no device
is hard-wired, so the same module trains and generates on CPU, CUDA and MPS, and can be built on the meta device
(``with torch.device("meta"): Llama(get_preset("llama3.1-405b"))`` allocates nothing). Parallelism (FSDP, tensor
parallel, ``torch.compile``, activation checkpointing) is applied from outside, by ``minillama.parallel``.

A ``state_dict`` uses the names of Meta's checkpoints (``tok_embeddings.weight``, ``layers.{i}.attention.wq.weight``,
``layers.{i}.feed_forward.w1.weight``, ``layers.{i}.attention_norm.weight``, ``norm.weight``, ``output.weight``), so
Meta's weights load unchanged and the numpy model's ``state_dict`` loads as is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minillama.config import ModelConfig
from minillama.rope import apply_rotary_emb, precompute_freqs_cis


class RMSNorm(nn.Module):
    """Root-mean-square normalization (Zhang and Sennrich 2019): ``x / sqrt(mean(x^2) + eps) * weight``.

    LayerNorm without the mean subtraction and the bias. Computed in float32 for bf16/fp16/fp32 inputs, as Meta does
    (``x.float()``), and in float64 for float64 inputs (``torch.promote_types(x.dtype, torch.float32)``), so that a
    float64 model is float64 throughout.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = torch.promote_types(x.dtype, torch.float32)  # float32 for bf16/fp16/fp32, float64 for float64
        normed = x.to(compute) * torch.rsqrt(x.to(compute).pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head ``n_rep`` times so that ``n_kv_heads`` heads serve ``n_heads`` query heads (GQA).

    ``(B, H_kv, S, D) -> (B, H_kv * n_rep, S, D)``; query head ``h`` reads key/value head ``h // n_rep``.
    Example: kv heads ``[k0, k1]`` with ``n_rep=2`` become ``[k0, k0, k1, k1]``.
    """
    if n_rep == 1:
        return x
    B, H_kv, S, D = x.shape  # batch, kv heads, keys, head dim
    return x[:, :, None].expand(B, H_kv, n_rep, S, D).reshape(B, H_kv * n_rep, S, D)


class KVCache:
    """Keys and values of the tokens seen so far, for every layer, so that decoding step ``t`` costs ``O(t)``.

    Stored as ``(n_layers, batch, n_kv_heads, max_seq_len, head_dim)`` for keys and for values: with grouped-query
    attention only the ``n_kv_heads`` heads are kept (4x less than ``n_heads`` for Llama 3 8B). Create one per
    generation; it holds no parameters and is never part of a ``state_dict``.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_seq_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        self.max_seq_len = max_seq_len or config.max_seq_len
        self.batch_size = batch_size
        shape = (config.n_layers, batch_size, config.n_kv_heads, self.max_seq_len, config.head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)

    def update(self, layer_id: int, start_pos: int, keys: torch.Tensor, values: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``keys``/``values`` (B, H_kv, T, D) at positions ``start_pos ... start_pos + T - 1`` of
        ``layer_id``; return all keys and values up to the last of them, ``(B, H_kv, start_pos + T, D)``."""
        B, _, T, _ = keys.shape  # batch, kv heads, new tokens, head dim
        end = start_pos + T
        if end > self.max_seq_len:
            raise ValueError(f"KV cache holds {self.max_seq_len} positions; positions up to {end} were requested")
        if B > self.batch_size:
            raise ValueError(f"KV cache was made for batch size {self.batch_size}, got {B}")
        if keys.shape[1] != self.keys.shape[2]:
            raise ValueError(f"KV cache was made for {self.keys.shape[2]} key/value heads, got {keys.shape[1]}: a "
                             f"tensor-parallel model holds a slice of the heads; generate without the cache "
                             f"(use_cache=False)")
        self.keys[layer_id, :B, :, start_pos:end] = keys
        self.values[layer_id, :B, :, start_pos:end] = values
        return self.keys[layer_id, :B, :, :end], self.values[layer_id, :B, :, :end]


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE and grouped-query attention (Ainslie et al. 2023)."""

    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.rope = config.position_encoding == "rope"
        self.wq = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, start_pos: int = 0, cache: KVCache | None = None
                ) -> torch.Tensor:
        B, T, _ = x.shape  # batch, time, dim
        D = self.head_dim
        # -1, not n_heads: under tensor parallelism (minillama.parallel) each rank's wq/wk/wv produce only its
        # n_heads / tp query heads and n_kv_heads / tp key/value heads; the arithmetic per head is the same.
        q = self.wq(x).view(B, T, -1, D)  # (B, T, H*D) -> (B, T, H, D)
        k = self.wk(x).view(B, T, -1, D)  # (B, T, H_kv*D) -> (B, T, H_kv, D)
        v = self.wv(x).view(B, T, -1, D)
        H, H_kv = q.shape[2], k.shape[2]  # heads held here: all of them on one device
        if self.rope:  # the NoPE ablation skips the rotation: only the causal mask orders the tokens
            q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, T, H, D) -> (B, H, T, D)
        if cache is not None:
            k, v = cache.update(self.layer_id, start_pos, k, v)  # (B, H_kv, S, D) with S = start_pos + T
        S = k.shape[2]
        mask = None  # S == T: no earlier tokens, the usual causal mask; T == 1: one new token sees every cached one
        if T < S and T > 1:  # a chunk after a cached prefix: query i sees keys 0 .. start_pos + i
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
        # SDPA's CPU and CUDA kernels read each kv head for its H / H_kv query heads in place (enable_gqa), without
        # a mask; elsewhere the heads are copied, which costs memory traffic proportional to the cache.
        gqa = H > H_kv and mask is None and x.device.type in ("cpu", "cuda")
        if not gqa:
            k, v = repeat_kv(k, H // H_kv), repeat_kv(v, H // H_kv)  # (B, H_kv, S, D) -> (B, H, S, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and S == T > 1,
                                           enable_gqa=gqa)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, H * D)  # (B, H, T, D) -> (B, T, H*D)
        return self.wo(y)


class FeedForward(nn.Module):
    """SwiGLU feed-forward layer (Shazeer 2020): ``w2(silu(w1 x) * w3 x)``.

    With ``ffn_type="silu"`` (an ablation) the gate ``w3`` is gone: ``w2(silu(w1 x))``, 3/2 as wide.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.ffn_hidden_dim, bias=False)
        self.w2 = nn.Linear(config.ffn_hidden_dim, config.dim, bias=False)
        self.w3 = nn.Linear(config.dim, config.ffn_hidden_dim, bias=False) if config.ffn_type == "swiglu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w3 is None:
            return self.w2(F.silu(self.w1(x)))
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def make_norm(config: ModelConfig) -> nn.Module:
    """An :class:`RMSNorm` of ``config.dim``, or ``nn.Identity`` when the ablation ``norm_type="none"`` is on."""
    return RMSNorm(config.dim, eps=config.norm_eps) if config.norm_type == "rmsnorm" else nn.Identity()


class TransformerBlock(nn.Module):
    """Pre-norm residual block (Xiong et al. 2020): ``h = x + attention(norm(x))``, ``out = h + ffn(norm(h))``.

    With ``norm_position="post"`` (an ablation) it is the original Transformer's post-norm block (Vaswani et al.
    2017): ``h = norm(x + attention(x))``, ``out = norm(h + ffn(h))``; the residual stream itself is normalized.
    """

    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        self.attention = Attention(config, layer_id)
        self.feed_forward = FeedForward(config)
        self.attention_norm = make_norm(config)
        self.ffn_norm = make_norm(config)
        self.post_norm = config.norm_position == "post"

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, start_pos: int = 0, cache: KVCache | None = None
                ) -> torch.Tensor:
        if self.post_norm:
            h = self.attention_norm(x + self.attention(x, freqs_cis, start_pos, cache))
            return self.ffn_norm(h + self.feed_forward(h))
        h = x + self.attention(self.attention_norm(x), freqs_cis, start_pos, cache)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    """The Llama 3 decoder (Grattafiori et al. 2024): embeddings, ``n_layers`` blocks, a final norm, the output head.

    ``forward(tokens)`` returns next-token logits ``(B, T, vocab_size)``; the loss belongs to the trainer. With
    ``tie_embeddings`` (Llama 3.2 1B/3B) there is no ``output`` module: the logits use ``tok_embeddings.weight``,
    and the ``state_dict`` has no ``output.weight`` key, as in the Hugging Face files of those models.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config, layer_id) for layer_id in range(config.n_layers))
        self.norm = make_norm(config)
        self.output = None if config.tie_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Initialize for training from scratch (Meta did not publish Llama's initialization; this is GPT-2's).

        Every matrix from ``N(0, std^2)`` with ``std = 0.02`` (Radford et al. 2019); the two matrices that write into
        the residual stream (``attention.wo``, ``feed_forward.w2``) get ``std / sqrt(2 * n_layers)``, so that the
        stream's variance does not grow with depth: it receives ``2 * n_layers`` such updates. Norm weights are 1.
        On the meta device this is a no-op; call it again after ``model.to_empty(device=...)``.
        """
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(param)
            elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                nn.init.normal_(param, mean=0.0, std=residual_std)
            else:
                nn.init.normal_(param, mean=0.0, std=std)

    def forward(self, tokens: torch.Tensor, start_pos: int = 0, cache: KVCache | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits for ``tokens`` (B, T) at positions ``start_pos ... start_pos + T - 1``.

        With a ``cache`` the keys and values of earlier positions are read from it and those of ``tokens`` are
        stored in it (generation); without one, ``tokens`` is a whole sequence (training, evaluation).
        ``last_only`` computes the logits of the last position only, ``(B, 1, vocab_size)`` (prompt prefill).
        """
        B, T = tokens.shape  # batch, time
        if start_pos + T > self.config.max_seq_len:
            raise ValueError(
                f"positions up to {start_pos + T} exceed the model's max_seq_len ({self.config.max_seq_len})"
            )
        h = self.tok_embeddings(tokens)  # (B, T) -> (B, T, dim)
        angles_dtype = torch.promote_types(h.dtype, torch.float32)  # float32 as Meta; float64 for a float64 model
        freqs_cis = precompute_freqs_cis(self.config, start_pos + T, start=start_pos, device=tokens.device,
                                         dtype=angles_dtype)  # (T, D/2, 2)
        for layer in self.layers:
            h = layer(h, freqs_cis, start_pos, cache)
        # Under sequence parallelism (minillama.parallel's tensor parallelism) ``h`` holds only this rank's slice of
        # the T positions, and the output head gathers them: the last position is then picked from the logits.
        sliced = last_only and h.shape[1] == T
        if sliced:
            h = h[:, -1:]  # (B, T, dim) -> (B, 1, dim)
        h = self.norm(h)
        if self.output is None:
            logits = F.linear(h, self.tok_embeddings.weight)  # (B, T, dim) -> (B, T, vocab)
        else:
            logits = self.output(h)  # (B, T, dim) -> (B, T, vocab)
        return logits[:, -1:] if last_only and not sliced else logits

    def num_params(self) -> int:
        """Number of parameters (each shared tensor once); equals ``config.num_params()``."""
        return sum(p.numel() for p in self.parameters())

    def make_cache(self, batch_size: int, max_seq_len: int | None = None) -> KVCache:
        """A :class:`KVCache` on this model's device and in its dtype."""
        weight = self.tok_embeddings.weight
        return KVCache(self.config, batch_size, max_seq_len, device=weight.device, dtype=weight.dtype)
