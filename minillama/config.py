"""``ModelConfig``: the shape of a Llama 3 model, with the field names of Meta's ``params.json``.

One config drives both model implementations (the numpy model of chapters 3-5 and the PyTorch model of chapter 6),
so a ``state_dict`` moves between them. The derived sizes (``head_dim``, ``ffn_hidden_dim``) are computed here, once,
exactly as Meta's reference code computes them, and the parameter and FLOP counts live next to them so that the
book's tables come from the same numbers the models are built from.

>>> config = get_preset("llama3.1-8b")
>>> config.head_dim, config.ffn_hidden_dim, config.num_params()
(128, 14336, 8030261248)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Meta's Llama 3 tokenizer: 128,000 BPE tokens + 256 special tokens.
LLAMA3_VOCAB_SIZE = 128256


def ffn_hidden_size(dim: int, multiple_of: int, ffn_dim_multiplier: float | None = None) -> int:
    """The SwiGLU hidden size, computed exactly as Meta's ``FeedForward`` does.

    SwiGLU has three matrices instead of two, so the hidden size starts at 2/3 of the usual ``4 * dim`` to keep the
    parameter count of a ``4 * dim`` GELU MLP (Shazeer 2020); Llama 3 then scales it by ``ffn_dim_multiplier`` and
    rounds up to a multiple of ``multiple_of`` (friendly to matmul tiles and to tensor-parallel splits).

    Example: ``dim=4096, multiple_of=1024, ffn_dim_multiplier=1.3``: ``int(8 * 4096 / 3) = 10922``,
    ``int(1.3 * 10922) = 14198``, rounded up to a multiple of 1024 -> ``14336`` (Llama 3 8B).
    """
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


# The ablation switches of chapter 11 and their values; the first is Llama 3's (the default).
ABLATION_CHOICES: dict[str, tuple[str, ...]] = {
    "norm_type": ("rmsnorm", "none"),
    "norm_position": ("pre", "post"),
    "position_encoding": ("rope", "none"),
    "ffn_type": ("swiglu", "silu"),
}


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of a Llama 3 model (Grattafiori et al. 2024), in the vocabulary of Meta's ``params.json``.

    Frozen: change a field with ``dataclasses.replace(config, n_layers=2)`` (or ``get_preset(name, n_layers=2)``),
    which validates again and recomputes the derived sizes.
    """

    dim: int = 4096
    """Width of the residual stream (the embedding size)."""
    n_layers: int = 32
    """Number of transformer blocks."""
    n_heads: int = 32
    """Number of query heads; ``head_dim = dim // n_heads``."""
    n_kv_heads: int | None = None
    """Number of key/value heads (grouped-query attention, Ainslie et al. 2023); ``None`` means ``n_heads``."""
    vocab_size: int = LLAMA3_VOCAB_SIZE
    """Number of token ids (rows of the embedding table)."""
    multiple_of: int = 256
    """The SwiGLU hidden size is rounded up to a multiple of this."""
    ffn_dim_multiplier: float | None = None
    """Extra factor on the SwiGLU hidden size (1.3 for Llama 3 8B/70B, 1.2 for 405B)."""
    norm_eps: float = 1e-5
    """Epsilon inside RMSNorm's square root."""
    rope_theta: float = 500000.0
    """RoPE base: the wavelengths of the rotary frequencies range from 2*pi to about 2*pi*rope_theta."""
    use_scaled_rope: bool = False
    """Apply Llama 3.1's long-context rescaling of the rotary frequencies (the four ``rope_*`` fields below)."""
    max_seq_len: int = 8192
    """Longest sequence the model is meant to see (the KV cache is sized from it)."""
    tie_embeddings: bool = False
    """Use the token embedding matrix as the output projection (Llama 3.2 1B and 3B)."""
    rope_scaling_factor: float = 8.0
    """Llama 3.1 scaling: low frequencies are divided by this (8 for 3.1; 32 for 3.2, as in its Hugging Face config)."""
    rope_low_freq_factor: float = 1.0
    """Llama 3.1 scaling: wavelengths longer than ``rope_original_max_seq_len / rope_low_freq_factor`` are scaled."""
    rope_high_freq_factor: float = 4.0
    """Llama 3.1 scaling: wavelengths shorter than ``rope_original_max_seq_len / rope_high_freq_factor`` are kept."""
    rope_original_max_seq_len: int = 8192
    """Llama 3.1 scaling: the context length of the original (unscaled) pre-training."""

    # Ablation switches (chapter 11): each replaces one of Llama's choices by the older or simpler one it beat.
    # The defaults are Llama 3; Meta's params.json has none of these fields.
    norm_type: str = "rmsnorm"
    """``"rmsnorm"`` (Llama) or ``"none"``: no normalization anywhere (the blocks' and the final norm are identity)."""
    norm_position: str = "pre"
    """``"pre"``: ``x + f(norm(x))`` (Llama, Xiong et al. 2020); ``"post"``: ``norm(x + f(x))`` (Vaswani et al.
    2017)."""
    position_encoding: str = "rope"
    """``"rope"`` (Llama) or ``"none"`` (NoPE, Kazemnejad et al. 2023): only the causal mask tells positions apart."""
    ffn_type: str = "swiglu"
    """``"swiglu"`` (Llama: ``w2(silu(w1 x) * w3 x)``) or ``"silu"``: ``w2(silu(w1 x))`` with a hidden size 3/2 as
    wide, so that both have ``3 * dim * ffn_hidden_size`` weights (Shazeer 2020's equal-parameter comparison)."""

    head_dim: int = field(init=False)
    """Derived: ``dim // n_heads``."""
    ffn_hidden_dim: int = field(init=False)
    """Derived: the SwiGLU hidden size (see :func:`ffn_hidden_size`); 3/2 of it for ``ffn_type="silu"``."""

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        self._validate()
        object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        hidden = ffn_hidden_size(self.dim, self.multiple_of, self.ffn_dim_multiplier)
        object.__setattr__(self, "ffn_hidden_dim", hidden if self.ffn_type == "swiglu" else 3 * hidden // 2)

    def _validate(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "max_seq_len",
                     "rope_original_max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("norm_eps", "rope_theta", "rope_scaling_factor", "rope_low_freq_factor", "rope_high_freq_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.ffn_dim_multiplier is not None and not (
            isinstance(self.ffn_dim_multiplier, (int, float)) and self.ffn_dim_multiplier > 0
        ):
            raise ValueError(f"ffn_dim_multiplier must be a positive number or None, got {self.ffn_dim_multiplier!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(
                f"head_dim = dim // n_heads = {self.dim // self.n_heads} must be even: RoPE rotates pairs of features"
            )
        for name, choices in ABLATION_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {getattr(self, name)!r}")
        if self.ffn_type == "silu" and ffn_hidden_size(self.dim, self.multiple_of, self.ffn_dim_multiplier) % 2:
            raise ValueError("ffn_type='silu' needs an even SwiGLU hidden size (its 3/2 keeps the parameter count); "
                             "use an even multiple_of")
        if self.use_scaled_rope and self.rope_high_freq_factor <= self.rope_low_freq_factor:
            raise ValueError(
                f"rope_high_freq_factor ({self.rope_high_freq_factor}) must be greater than "
                f"rope_low_freq_factor ({self.rope_low_freq_factor})"
            )

    # --- serialization -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The constructor fields (not the derived ones), JSON-ready."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo should not silently become a default)."""
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        derived = {f.name for f in dataclasses.fields(cls) if not f.init}
        unknown = sorted(set(data) - known - derived)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> ModelConfig:
        """Read a config written by :meth:`to_json` (a path, or the JSON text itself)."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text()
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_params_json(cls, path: str | Path, **overrides: Any) -> ModelConfig:
        """Read Meta's ``params.json`` (a file, or the folder holding it).

        Meta's file leaves out ``max_seq_len`` (the reference code takes it from the caller) and says nothing about
        tied embeddings; we default to 131072 tokens for the rope-scaled 3.1/3.2 models and 8192 otherwise, and to
        untied embeddings. Keys Meta's ``ModelArgs`` knows but that do not change the architecture
        (``max_batch_size``, ``quantization_args``, ``lora_args``, vision settings) are ignored, as Meta does.
        ``overrides`` win over the file, e.g. ``rope_scaling_factor=32`` for Llama 3.2, whose ``params.json`` does not
        record its factor.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "params.json"
        if not path.exists():
            raise FileNotFoundError(f"no params.json at {path}")
        params = json.loads(path.read_text())
        params = params.get("model", params)
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        values = {k: v for k, v in params.items() if k in known}
        values.setdefault("max_seq_len", 131072 if values.get("use_scaled_rope") else 8192)
        values.update(overrides)
        return cls.from_dict(values)

    def to_params_json(self) -> dict[str, Any]:
        """The fields Meta's ``params.json`` holds (the inverse of :meth:`from_params_json`)."""
        meta_fields = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "ffn_dim_multiplier",
                       "norm_eps", "rope_theta", "use_scaled_rope")
        return {name: getattr(self, name) for name in meta_fields}

    # --- accounting ----------------------------------------------------------------------------------------------

    @property
    def norm_dim(self) -> int:
        """Weights of one norm: ``dim``, or 0 with ``norm_type="none"``."""
        return self.dim if self.norm_type == "rmsnorm" else 0

    def ablations(self) -> dict[str, str]:
        """The ablation switches that differ from Llama 3's choices (empty for every real Llama)."""
        return {name: getattr(self, name) for name, choices in ABLATION_CHOICES.items()
                if getattr(self, name) != choices[0]}

    def num_params(self, *, embeddings: bool = True) -> int:
        """Exact number of parameters; a tied embedding/output matrix is counted once.

        Per layer: attention ``dim * head_dim * (2 * n_heads + 2 * n_kv_heads)`` (wq, wo; wk, wv), SwiGLU
        ``3 * dim * ffn_hidden_dim`` (w1, w2, w3; ``2 * dim * ffn_hidden_dim`` for the SiLU MLP), two RMSNorm
        weights of ``dim`` (none with ``norm_type="none"``). Plus the embedding table
        ``vocab_size * dim``, the final norm ``dim``, and the output projection ``dim * vocab_size`` unless tied.
        With ``embeddings=False`` the embedding table is left out (the output projection stays: it is a matmul).
        """
        attention = self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        feed_forward = (3 if self.ffn_type == "swiglu" else 2) * self.dim * self.ffn_hidden_dim
        per_layer = attention + feed_forward + 2 * self.norm_dim
        table = self.vocab_size * self.dim
        total = self.n_layers * per_layer + self.norm_dim + (0 if self.tie_embeddings else table)
        return total + table if embeddings else total + (table if self.tie_embeddings else 0)

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (forward + backward) at context length ``seq_len``, PaLM's convention.

        ``6 * N + 12 * n_layers * n_heads * head_dim * seq_len`` (Chowdhery et al. 2022, appendix B):

        - ``6 N``: each weight used in a matmul costs 2 FLOPs (multiply + add) per token forward and 4 backward
          (gradients for the input and for the weight), Kaplan et al. 2020. ``N`` counts every matmul weight,
          including the output projection (as Chinchilla does, Hoffmann et al. 2022), but not the embedding lookup
          and the norms, which are not matmuls.
        - ``12 L H D T``: attention scores ``Q K^T`` and the weighted sum ``A V`` cost ``2 * 2 * T * H * D`` per token
          and layer forward, times 3 for forward + backward. Counted for the full ``T x T`` square, as PaLM does;
          a causal kernel skips about half of it, so this is the convention for MFU, not a measurement.

        Inference (forward only) costs a third of this.
        """
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0:
            raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
        matmul_params = self.num_params(embeddings=False) - (2 * self.n_layers + 1) * self.norm_dim
        return 6 * matmul_params + 12 * self.n_layers * self.n_heads * self.head_dim * seq_len


# --- presets -------------------------------------------------------------------------------------------------------

_LLAMA3 = dict(vocab_size=LLAMA3_VOCAB_SIZE, norm_eps=1e-5, rope_theta=500000.0)

PRESETS: dict[str, ModelConfig] = {
    # Ours, for tests, laptops and the book's training runs (small vocabularies from our own BPE tokenizers).
    "nano": ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=256, multiple_of=32,
                        rope_theta=10000.0, max_seq_len=128),
    "tiny": ModelConfig(dim=256, n_layers=4, n_heads=8, n_kv_heads=4, vocab_size=4096, multiple_of=64,
                        rope_theta=10000.0, max_seq_len=256, tie_embeddings=True),
    "small-100m": ModelConfig(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, vocab_size=32768, multiple_of=256,
                              rope_theta=10000.0, max_seq_len=1024, tie_embeddings=True),
    # Meta's released models: params.json values (github.com/meta-llama/llama-models); the 3.2 rope factor of 32
    # and the tied embeddings are those of the released Hugging Face configs.
    "llama3.2-1b": ModelConfig(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, multiple_of=256, ffn_dim_multiplier=1.5,
                               use_scaled_rope=True, rope_scaling_factor=32.0, max_seq_len=131072,
                               tie_embeddings=True, **_LLAMA3),
    "llama3.2-3b": ModelConfig(dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, multiple_of=256, ffn_dim_multiplier=1.0,
                               use_scaled_rope=True, rope_scaling_factor=32.0, max_seq_len=131072,
                               tie_embeddings=True, **_LLAMA3),
    "llama3-8b": ModelConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, multiple_of=1024, ffn_dim_multiplier=1.3,
                             max_seq_len=8192, **_LLAMA3),
    "llama3-70b": ModelConfig(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, multiple_of=4096,
                              ffn_dim_multiplier=1.3, max_seq_len=8192, **_LLAMA3),
    "llama3.1-8b": ModelConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, multiple_of=1024,
                               ffn_dim_multiplier=1.3, use_scaled_rope=True, max_seq_len=131072, **_LLAMA3),
    "llama3.1-70b": ModelConfig(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, multiple_of=4096,
                                ffn_dim_multiplier=1.3, use_scaled_rope=True, max_seq_len=131072, **_LLAMA3),
    "llama3.1-405b": ModelConfig(dim=16384, n_layers=126, n_heads=128, n_kv_heads=8, multiple_of=4096,
                                 ffn_dim_multiplier=1.2, use_scaled_rope=True, max_seq_len=131072, **_LLAMA3),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset called ``name``, with any field replaced by ``overrides`` (validated again).

    >>> get_preset("tiny", n_layers=6).n_layers
    6
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
