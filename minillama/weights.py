"""Model weights in and out: our folder format, Meta's consolidated checkpoints, and Hugging Face Llama folders.

Three on-disk formats, one in-memory form (a ``state_dict`` with Meta's parameter names, which our model uses):

- **ours**: a folder with ``model.safetensors`` (our names) and ``config.json`` (``ModelConfig.to_dict()``),
  plus ``tokenizer.model`` when a tokenizer is saved with it.
- **Meta**: ``consolidated.00.pth ... consolidated.NN.pth`` + ``params.json``, one file per model-parallel rank
  (8 for 70B and 405B); merged here into one state dict along the dimension each layer was split on.
- **Hugging Face**: ``config.json`` + ``model.safetensors`` (or an indexed set of shards), with HF names and the
  q/k rows permuted for HF's "rotate half" RoPE. A model saved here opens with
  ``transformers.LlamaForCausalLM.from_pretrained``; saved with its tokenizer, with ``AutoTokenizer`` too.

The conversions are pure functions on state dicts; file I/O sits at the bottom. Nothing here unpickles arbitrary
objects: safetensors, or ``torch.load(weights_only=True)`` for Meta's ``.pth`` files. Files are written atomically
(temporary file, fsync, rename) so an interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from minillama.atomic import atomic_write
from minillama.config import PRESETS, ModelConfig
from minillama.model import Llama

StateDict = dict[str, torch.Tensor]

# --- checking a state dict against a config ------------------------------------------------------------------------


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter name of ``Llama(config)`` and its shape (computed on the meta device: no memory)."""
    with torch.device("meta"):
        model = Llama(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def check_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig, source: str = "checkpoint") -> None:
    """Raise a ``ValueError`` naming every missing key, unexpected key and wrong shape of ``state_dict``."""
    expected = expected_shapes(config)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k}: {tuple(state_dict[k].shape)} (expected {expected[k]})"
             for k in expected if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_few(wrong)}")
    if problems:
        raise ValueError(f"{source} does not match the model config: " + "; ".join(problems))


def _few(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}]" if len(items) <= limit else f"[{shown}, ... and {len(items) - limit} more]"


def model_from_state_dict(config: ModelConfig, state_dict: Mapping[str, torch.Tensor],
                          device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Llama:
    """A ``Llama`` holding ``state_dict`` (checked first), built on the meta device so weights are never allocated
    twice."""
    check_state_dict(state_dict, config)
    tensors = {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in state_dict.items()}
    with torch.device("meta"):
        model = Llama(config)
    model.load_state_dict(tensors, strict=True, assign=True)
    return model


# --- Hugging Face ----------------------------------------------------------------------------------------------------

# Our (Meta's) name -> Hugging Face's, per layer and global.
_HF_LAYER_NAMES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_HF_GLOBAL_NAMES = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                    "output.weight": "lm_head.weight"}
_LAYER_KEY = re.compile(r"layers\.(\d+)\.(.+)")


def permute_for_hf(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of ``wq``/``wk`` from Meta's RoPE layout to Hugging Face's.

    Meta rotates adjacent pairs of each head's features ``(x0, x1), (x2, x3), ...``; HF's ``rotate_half`` pairs
    feature ``j`` with ``j + D/2``. Permuting the rows of the projection (per head: even rows first, then odd rows)
    makes HF's rotation compute the same attention scores. Rows ``[a0, b0, a1, b1]`` of a head become
    ``[a0, a1, b0, b1]``.
    """
    rows, cols = weight.shape
    return weight.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def permute_from_hf(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of :func:`permute_for_hf`: rows ``[a0, a1, b0, b1]`` of a head become ``[a0, b0, a1, b1]``."""
    rows, cols = weight.shape
    return weight.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def to_hf_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig) -> StateDict:
    """Our state dict -> Hugging Face ``LlamaForCausalLM`` names, with the q/k rows permuted."""
    out: StateDict = {}
    for name, tensor in state_dict.items():
        match = _LAYER_KEY.fullmatch(name)
        if match:
            layer, rest = match.groups()
            if rest == "attention.wq.weight":
                tensor = permute_for_hf(tensor, config.n_heads)
            elif rest == "attention.wk.weight":
                tensor = permute_for_hf(tensor, config.n_kv_heads)
            out[f"model.layers.{layer}.{_HF_LAYER_NAMES[rest]}"] = tensor
        else:
            out[_HF_GLOBAL_NAMES[name]] = tensor
    return out


def from_hf_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig) -> StateDict:
    """Hugging Face ``LlamaForCausalLM`` names -> ours, undoing the q/k permutation.

    Unknown keys are an error (they would be silently dropped otherwise); the rotary ``inv_freq`` buffers that
    older ``transformers`` versions saved are skipped, since we recompute them.
    """
    layer_names = {hf: ours for ours, hf in _HF_LAYER_NAMES.items()}
    global_names = {hf: ours for ours, hf in _HF_GLOBAL_NAMES.items()}
    out: StateDict = {}
    unknown = []
    for name, tensor in state_dict.items():
        match = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if match and match.group(2) in layer_names:
            layer, rest = match.group(1), layer_names[match.group(2)]
            if rest == "attention.wq.weight":
                tensor = permute_from_hf(tensor, config.n_heads)
            elif rest == "attention.wk.weight":
                tensor = permute_from_hf(tensor, config.n_kv_heads)
            out[f"layers.{layer}.{rest}"] = tensor
        elif name in global_names:
            out[global_names[name]] = tensor
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"Hugging Face checkpoint has keys a Llama model does not: {_few(unknown)}")
    if config.tie_embeddings and "output.weight" in out:
        _check_tied(out)
    return out


def _check_tied(state_dict: StateDict) -> None:
    """Drop a stored ``output.weight`` of a tied model, after checking that it is the embedding matrix."""
    output = state_dict.pop("output.weight")
    if not torch.equal(output, state_dict["tok_embeddings.weight"]):
        raise ValueError("config says tie_embeddings but output.weight differs from tok_embeddings.weight")


def config_to_hf(config: ModelConfig, dtype: torch.dtype = torch.float32) -> dict:
    """A Hugging Face ``LlamaConfig`` dict for ``config``.

    RoPE settings are written both as ``rope_theta`` + ``rope_scaling`` (transformers 4.x) and as
    ``rope_parameters`` (transformers 5), so either version reads them.
    """
    if config.ablations():
        raise ValueError(f"Hugging Face's LlamaConfig has no field for the ablation switches {config.ablations()}: "
                         f"only Llama 3 architectures convert")
    rope_scaling = None
    if config.use_scaled_rope:
        rope_scaling = {"rope_type": "llama3", "factor": config.rope_scaling_factor,
                        "low_freq_factor": config.rope_low_freq_factor,
                        "high_freq_factor": config.rope_high_freq_factor,
                        "original_max_position_embeddings": config.rope_original_max_seq_len}
    dtype_name = str(dtype).removeprefix("torch.")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "rms_norm_eps": config.norm_eps,
        "max_position_embeddings": config.max_seq_len,
        "tie_word_embeddings": config.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope_scaling,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta, **(rope_scaling or {})},
        "torch_dtype": dtype_name,
    }


def config_from_hf(hf: Mapping) -> ModelConfig:
    """A ``ModelConfig`` from a Hugging Face Llama ``config.json`` dict (transformers 4.x or 5 layout).

    HF stores the SwiGLU size directly (``intermediate_size``); we find Meta's ``multiple_of`` and
    ``ffn_dim_multiplier`` that give it (see :func:`_ffn_fields`).
    """
    if hf.get("model_type", "llama") != "llama":
        raise ValueError(f"not a Llama config: model_type is {hf.get('model_type')!r}")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise ValueError(f"{flag}=True is not part of the Llama 3 architecture")
    dim, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, dim // n_heads):
        raise ValueError(f"head_dim {hf['head_dim']} != hidden_size // num_attention_heads = {dim // n_heads}")
    rope = dict(hf.get("rope_parameters") or {})
    rope.update(hf.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise ValueError(f"RoPE type {rope_type!r} is not supported (only Llama 3's 'llama3' scaling or none)")
    scaling = {}
    if rope_type == "llama3":
        scaling = dict(use_scaled_rope=True, rope_scaling_factor=float(rope["factor"]),
                       rope_low_freq_factor=float(rope["low_freq_factor"]),
                       rope_high_freq_factor=float(rope["high_freq_factor"]),
                       rope_original_max_seq_len=int(rope["original_max_position_embeddings"]))
    multiple_of, ffn_dim_multiplier = _ffn_fields(dim, hf["intermediate_size"])
    return ModelConfig(
        dim=dim, n_layers=hf["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads, vocab_size=hf["vocab_size"], multiple_of=multiple_of,
        ffn_dim_multiplier=ffn_dim_multiplier, norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=float(hf.get("rope_theta") or rope.get("rope_theta") or 10000.0),
        max_seq_len=hf.get("max_position_embeddings", 8192), tie_embeddings=bool(hf.get("tie_word_embeddings")),
        **scaling,
    )


def _ffn_fields(dim: int, hidden: int) -> tuple[int, float | None]:
    """``(multiple_of, ffn_dim_multiplier)`` reproducing a given SwiGLU size, preferring Meta's values.

    Tries the largest power-of-two ``multiple_of`` (up to 4096) that divides ``hidden`` with no multiplier, then
    with a multiplier rounded to 1, 2, 3 decimals (1.3 for Llama 3 8B), and falls back to ``multiple_of=1`` and an
    exact multiplier.
    """
    from minillama.config import ffn_hidden_size

    base = int(2 * (4 * dim) / 3)
    multiples = [m for m in (4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1) if hidden % m == 0]
    for multiple_of in multiples:
        for multiplier in (None, *(round(hidden / base, digits) for digits in (1, 2, 3))):
            if ffn_hidden_size(dim, multiple_of, multiplier) == hidden:
                return multiple_of, multiplier
    return 1, (hidden + 0.5) / base


# --- Meta's model-parallel shards ------------------------------------------------------------------------------------

# How Meta's fairscale layers split each weight across model-parallel ranks (llama_models/checkpoint.py).
_COLUMN_PARALLEL = ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "feed_forward.w1.weight",
                    "feed_forward.w3.weight", "output.weight")  # output rows split: concatenate on dim 0
_ROW_PARALLEL = ("attention.wo.weight", "feed_forward.w2.weight")  # input columns split: concatenate on dim 1
_IGNORED_META_KEYS = ("rope.freqs",)  # Llama 1/2 checkpoints stored the rotary table; we recompute it


def merge_meta_shards(shards: list[Mapping[str, torch.Tensor]], config: ModelConfig) -> StateDict:
    """Merge Meta's model-parallel state dicts (one per ``consolidated.NN.pth``) into one.

    Column-parallel weights (``wq wk wv w1 w3 output``) were split by output rows and are concatenated on dim 0;
    row-parallel weights (``wo w2``) by input columns, concatenated on dim 1. ``tok_embeddings`` is a
    ``VocabParallelEmbedding`` in Llama 3 (split by vocabulary rows, dim 0) and was a ``ParallelEmbedding`` in
    Llama 1/2 (split by columns, dim 1): the shard shapes tell which. Norm weights are replicated. (Meta's 16-rank
    405B checkpoint stores each of the 8 kv heads twice and says ``n_kv_heads: 16`` in its ``params.json``; it loads
    as the equivalent 16-kv-head model.)
    """
    if not shards:
        raise ValueError("no model-parallel shards to merge")
    keys = [k for k in shards[0] if k not in _IGNORED_META_KEYS]
    for rank, shard in enumerate(shards[1:], start=1):
        if set(shard) != set(shards[0]):
            differ = sorted(set(shard) ^ set(shards[0]))
            raise ValueError(f"shard {rank} and shard 0 hold different keys: {_few(differ)}")
    if len(shards) == 1:
        return {k: shards[0][k] for k in keys}
    merged: StateDict = {}
    for key in keys:
        parts = [shard[key] for shard in shards]
        if key.endswith(("attention.wk.weight", "attention.wv.weight")):
            merged[key] = _merge_kv(key, parts, config)
        elif key.endswith(_COLUMN_PARALLEL):
            merged[key] = torch.cat(parts, dim=0)
        elif key.endswith(_ROW_PARALLEL):
            merged[key] = torch.cat(parts, dim=1)
        elif key == "tok_embeddings.weight":
            merged[key] = torch.cat(parts, dim=0 if parts[0].shape[1] == config.dim else 1)
        else:  # norms: replicated on every rank
            if any(not torch.equal(p, parts[0]) for p in parts[1:]):
                raise ValueError(f"{key} should be replicated across shards but differs between them")
            merged[key] = parts[0]
    return merged


def _merge_kv(key: str, parts: list[torch.Tensor], config: ModelConfig) -> torch.Tensor:
    merged = torch.cat(parts, dim=0)
    rows = config.n_kv_heads * config.head_dim
    if merged.shape[0] != rows:
        raise ValueError(f"{key}: {len(parts)} shards concatenate to {merged.shape[0]} rows; n_kv_heads * head_dim "
                         f"= {rows}")
    return merged


def _fill_from_preset(config: ModelConfig) -> ModelConfig:
    """Meta's ``params.json`` does not record the rope scaling factor (32 for Llama 3.2, 8 for 3.1); take it and the
    tying from the preset with the same architecture, if there is one."""
    architecture = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "ffn_dim_multiplier",
                    "use_scaled_rope")
    for preset in PRESETS.values():
        if all(getattr(preset, f) == getattr(config, f) for f in architecture):
            return dataclasses.replace(config, rope_scaling_factor=preset.rope_scaling_factor,
                                       tie_embeddings=preset.tie_embeddings)
    return config


# --- files -----------------------------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def _write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata={"format": "pt"}))


def _read_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupt?): {error}") from None


def save_checkpoint(model: Llama, path: str | Path, tokenizer_file: str | Path | None = None) -> Path:
    """Save ``model`` in our format: ``path/model.safetensors`` + ``path/config.json``.

    With ``tokenizer_file`` (a tiktoken rank file), it is copied as ``tokenizer.model``, together with its JSON
    sidecar ``tokenizer.model.json`` (split pattern, special tokens) when it has one.
    """
    path = Path(path)
    _write_safetensors(path / "model.safetensors", model.state_dict())
    _write_json(path / "config.json", model.config.to_dict())
    if tokenizer_file is not None:
        tokenizer_file = Path(tokenizer_file)
        sidecar = tokenizer_file.with_name(tokenizer_file.name + ".json")
        for source, target in ((tokenizer_file, "tokenizer.model"), (sidecar, "tokenizer.model.json")):
            if source.exists() or source == tokenizer_file:
                data = source.read_bytes()
                atomic_write(path / target, lambda tmp, data=data: tmp.write_bytes(data))
    return path


def save_hf(model: Llama, path: str | Path, tokenizer=None) -> Path:
    """Save ``model`` as a Hugging Face Llama folder (``config.json`` + ``model.safetensors``).

    With ``tokenizer`` (a ``BPETokenizer``, a ``Llama3Tokenizer`` or a tiktoken rank file such as our
    ``tokenizer.model``), also ``tokenizer.json`` + ``tokenizer_config.json``
    (:mod:`minillama.tokenizer.huggingface`), so that ``transformers.AutoTokenizer.from_pretrained(path)`` opens the
    folder too.
    """
    path = Path(path)
    if tokenizer is not None:
        from minillama.tokenizer.huggingface import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
        if tokenizer.n_vocab > model.config.vocab_size:
            raise ValueError(f"the tokenizer has ids up to {tokenizer.n_vocab - 1}, beyond the model's vocab_size of "
                             f"{model.config.vocab_size}")
    dtype = model.tok_embeddings.weight.dtype
    _write_safetensors(path / "model.safetensors", to_hf_state_dict(model.state_dict(), model.config))
    _write_json(path / "config.json", config_to_hf(model.config, dtype))
    if tokenizer is not None:
        from minillama.tokenizer.huggingface import save_hf_tokenizer

        save_hf_tokenizer(tokenizer, path, model_max_length=model.config.max_seq_len)
    return path


def detect_format(path: str | Path) -> str:
    """``"minillama"``, ``"hf"`` or ``"meta"``: which kind of checkpoint folder ``path`` is."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder {path} does not exist")
    if (path / "params.json").exists() and list(path.glob("consolidated.*.pth")):
        return "meta"
    if (path / "config.json").exists():
        config = json.loads((path / "config.json").read_text())
        return "minillama" if "dim" in config else "hf"
    raise ValueError(
        f"{path} is not a checkpoint folder: expected config.json + model.safetensors (minillama or Hugging Face) "
        f"or params.json + consolidated.*.pth (Meta); found {sorted(p.name for p in path.iterdir())}"
    )


def load_state(path: str | Path) -> tuple[ModelConfig, StateDict]:
    """Read a checkpoint folder of any of the three formats as ``(config, state_dict in our names)``."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "minillama":
        if not (path / "model.safetensors").exists() and (path / ".metadata").exists():
            raise ValueError(f"{path} is a sharded (FSDP) checkpoint: make one file of it first with "
                             f"minillama.parallel.sharded_checkpoint.consolidate(CHECKPOINT, OUT)")
        config = ModelConfig.from_json(path / "config.json")
        state_dict = _read_safetensors(_require(path / "model.safetensors"))
    elif kind == "hf":
        config = config_from_hf(json.loads((path / "config.json").read_text()))
        state_dict = from_hf_state_dict(_read_hf_weights(path), config)
    else:
        config = _fill_from_preset(ModelConfig.from_params_json(path))
        files = sorted(path.glob("consolidated.*.pth"))
        shards = [torch.load(f, map_location="cpu", weights_only=True, mmap=True) for f in files]
        state_dict = merge_meta_shards(shards, config)
        if "output.weight" not in state_dict:
            config = dataclasses.replace(config, tie_embeddings=True)
        elif config.tie_embeddings:
            _check_tied(state_dict)
    check_state_dict(state_dict, config, source=f"{kind} checkpoint {path}")
    return config, state_dict


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    return path


def _inside(folder: Path, name: str) -> Path:
    """``folder / name`` for a shard name from an index file, refused unless it is a file name in ``folder``
    (an index must not send the reader to ``../../somewhere`` or ``/etc``)."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"{folder / 'model.safetensors.index.json'} names a shard outside its folder: {name!r}")
    return folder / name


def _read_hf_weights(path: Path) -> StateDict:
    if (path / "model.safetensors").exists():
        return _read_safetensors(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    if index.exists():
        state_dict: StateDict = {}
        for name in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state_dict.update(_read_safetensors(_require(_inside(path, name))))
        return state_dict
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors, model.safetensors.index.json or pytorch_model.bin in {path}")


def load_checkpoint(path: str | Path, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> Llama:
    """A ``Llama`` from a checkpoint folder (ours, Meta's or Hugging Face's), on ``device``, in ``dtype``
    (default: the checkpoint's)."""
    config, state_dict = load_state(path)
    return model_from_state_dict(config, state_dict, device=device, dtype=dtype)
