"""Chapters 3-5: Llama 3 in numpy, on the ``minillama.autograd`` engine.

- :mod:`.rope`: rotary position embeddings in Meta's convention, with Llama 3.1's frequency scaling;
- :mod:`.layers`: grouped-query attention, the SwiGLU feed-forward layer, the pre-norm block;
- :mod:`.model`: :class:`Llama`, whose ``state_dict`` loads into the PyTorch model of chapter 6;
- :mod:`.sample`: greedy, temperature and top-k sampling;
- :mod:`.train`: a CPU training loop (``train``: AdamW, warmup + cosine, evaluation), and the command line
  ``python -m minillama.numpy_llama`` that trains on tinyshakespeare.
"""

from __future__ import annotations

from .layers import Attention, FeedForward, TransformerBlock
from .model import Llama
from .rope import apply_rope_scaling, apply_rotary_emb, precompute_freqs_cis, rope_frequencies
from .sample import generate, sample_next_token
from .train import TrainConfig, bits_per_byte, estimate_loss, get_batch, lm_loss, make_optimizer

__all__ = [
    "Attention",
    "FeedForward",
    "Llama",
    "TrainConfig",
    "TransformerBlock",
    "apply_rope_scaling",
    "apply_rotary_emb",
    "bits_per_byte",
    "estimate_loss",
    "generate",
    "get_batch",
    "lm_loss",
    "make_optimizer",
    "precompute_freqs_cis",
    "rope_frequencies",
    "sample_next_token",
]
