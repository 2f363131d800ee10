"""``Llama``: the Llama 3 decoder {cite}`grattafiori2024llama3` on ``minillama.autograd`` (chapter 5).

Token embeddings, ``n_layers`` pre-norm blocks (grouped-query attention with RoPE, SwiGLU), a final RMSNorm and the
output projection, with Meta's parameter names::

    tok_embeddings.weight
    layers.{i}.attention.wq.weight  ... wk, wv, wo
    layers.{i}.feed_forward.w1.weight  ... w2, w3
    layers.{i}.attention_norm.weight, layers.{i}.ffn_norm.weight
    norm.weight
    output.weight            (absent with tie_embeddings: the logits then use tok_embeddings.weight)

so ``state_dict()`` loads unchanged into the PyTorch model of chapter 6 (``minillama.model.Llama``) and back.
``forward(tokens)`` returns logits; the loss belongs to the training loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minillama.autograd import Tensor, get_rng, nn
from minillama.autograd import functional as F
from minillama.config import ModelConfig

from .layers import TransformerBlock
from .rope import precompute_freqs_cis


class Llama(nn.Module):
    """The Llama 3 architecture in numpy: ``Llama(get_preset("nano"))``, then ``logits = model(tokens)``.

    ``dtype`` is the dtype of the parameters (and so of every activation): float32 to train, float64 for
    gradient checks and for the comparison with PyTorch.
    """

    def __init__(self, config: ModelConfig, dtype: Any = np.float32):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"Llama takes a ModelConfig (e.g. get_preset('nano')), got {type(config).__name__}")
        if config.ablations():
            raise ValueError(f"the numpy model is Llama 3 only; the ablation switches {config.ablations()} exist in "
                             f"the PyTorch model (minillama.model.Llama)")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"the parameters must be floating point, got dtype {dtype}")
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim, dtype=dtype)
        self.layers = nn.ModuleList(TransformerBlock(config, dtype=dtype) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.dim, eps=config.norm_eps, dtype=dtype)
        self.output = None if config.tie_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False,
                                                                   dtype=dtype)
        self.init_weights()

    def init_weights(self, std: float = 0.02) -> None:
        """Initialise for training from scratch, as the PyTorch model does (GPT-2's scheme {cite}`radford2019gpt2`;
        Meta did not publish Llama's).

        Every matrix from ``N(0, std^2)``; the two matrices that write into the residual stream (``attention.wo``,
        ``feed_forward.w2``) get ``std / sqrt(2 n_layers)``, because the stream adds up ``2 n_layers`` of their
        outputs and its variance should not grow with depth. Norm weights are 1. Draws from the engine's generator
        (seed it with ``minillama.autograd.manual_seed``).
        """
        rng = get_rng()
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                param.data[...] = 1.0
            elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                param.data[...] = rng.normal(0.0, residual_std, param.shape)
            else:
                param.data[...] = rng.normal(0.0, std, param.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.tok_embeddings.weight.dtype

    def forward(self, tokens: Any) -> Tensor:
        """Next-token logits ``(B, T, vocab_size)`` for integer ``tokens`` ``(B, T)``: ``logits[b, t]`` scores the
        token that follows ``tokens[b, :t + 1]``."""
        tokens = np.asarray(tokens.data if isinstance(tokens, Tensor) else tokens)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (batch, time), got {tokens.shape}")
        B, T = tokens.shape  # batch, time
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds the model's max_seq_len ({self.config.max_seq_len})")
        h = self.tok_embeddings(tokens)  # (B, T) -> (B, T, dim)
        freqs_cis = precompute_freqs_cis(self.config, T, dtype=self.dtype)  # (T, head_dim/2, 2)
        for layer in self.layers:
            h = layer(h, freqs_cis)
        h = self.norm(h)
        if self.output is None:
            return F.linear(h, self.tok_embeddings.weight)  # (B, T, dim) -> (B, T, vocab)
        return self.output(h)  # (B, T, dim) -> (B, T, vocab)
