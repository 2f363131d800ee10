"""ModelConfig: presets against Meta's published values and parameter counts, derived sizes, validation, JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest

from minillama.config import PRESETS, ModelConfig, ffn_hidden_size, get_preset

# Exact parameter counts of the released checkpoints (sum of numel over the Hugging Face safetensors files, tied
# embeddings counted once) and the rounded figures of Meta's model cards.
PUBLISHED = {
    "llama3.2-1b": (1_235_814_400, "1.24B"),
    "llama3.2-3b": (3_212_749_824, "3.21B"),
    "llama3-8b": (8_030_261_248, "8.03B"),
    "llama3.1-8b": (8_030_261_248, "8.03B"),
    "llama3-70b": (70_553_706_496, "70.6B"),
    "llama3.1-70b": (70_553_706_496, "70.6B"),
    "llama3.1-405b": (405_853_388_800, "405.9B"),
}

# Our preset name -> the model descriptor in Meta's llama-models registry.
META_SKUS = {
    "llama3.2-1b": "Llama3.2-1B",
    "llama3.2-3b": "Llama3.2-3B",
    "llama3-8b": "Llama-3-8B",
    "llama3-70b": "Llama-3-70B",
    "llama3.1-8b": "Llama3.1-8B",
    "llama3.1-70b": "Llama3.1-70B",
    "llama3.1-405b": "Llama3.1-405B",
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_real_presets_have_the_published_parameter_counts(name):
    exact, rounded = PUBLISHED[name]
    count = get_preset(name).num_params()
    assert count == exact
    assert f"{count / 1e9:.{len(rounded.split('.')[1]) - 1}f}B" == rounded


@pytest.mark.parametrize("name", META_SKUS)
def test_real_presets_equal_metas_params_json(name, tmp_path):
    from llama_models.sku_list import resolve_model

    arch_args = resolve_model(META_SKUS[name]).arch_args
    (tmp_path / "params.json").write_text(json.dumps(arch_args))
    from_meta = ModelConfig.from_params_json(tmp_path)
    preset = get_preset(name)
    for field, value in arch_args.items():
        assert getattr(preset, field) == value, field
    # params.json records neither tying nor the 3.2 rope factor; everything else must agree
    assert dataclasses.replace(from_meta, tie_embeddings=preset.tie_embeddings,
                               rope_scaling_factor=preset.rope_scaling_factor) == preset


@pytest.mark.parametrize(
    ("dim", "multiple_of", "multiplier", "hidden"),
    [(4096, 1024, 1.3, 14336), (8192, 4096, 1.3, 28672), (16384, 4096, 1.2, 53248), (2048, 256, 1.5, 8192),
     (3072, 256, 1.0, 8192), (4096, 256, None, 11008)],  # the last one is Llama 2 7B
)
def test_ffn_hidden_size_matches_the_released_models(dim, multiple_of, multiplier, hidden):
    assert ffn_hidden_size(dim, multiple_of, multiplier) == hidden


def test_num_params_by_hand_for_nano():
    c = get_preset("nano")  # dim 64, 2 layers, 4 heads of 16, 2 kv heads, vocab 256, hidden 192, untied
    assert (c.head_dim, c.ffn_hidden_dim) == (16, 192)
    per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 192 + 2 * 64
    assert c.num_params() == 2 * per_layer + 64 + 2 * 256 * 64
    assert c.num_params(embeddings=False) == 2 * per_layer + 64 + 256 * 64
    tied = dataclasses.replace(c, tie_embeddings=True)
    assert tied.num_params() == c.num_params() - 256 * 64


def test_flops_per_token_by_hand():
    c = get_preset("nano")
    matmul = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 192) + 64 * 256  # the output projection is a matmul
    assert c.flops_per_token(100) == 6 * matmul + 12 * 2 * 4 * 16 * 100


def test_flops_per_token_reproduces_llama3_405b_compute_budget():
    # Llama 3 paper: 405B trained on 15.6T tokens with 3.8e25 FLOPs, i.e. the 6N rule (their attention cost aside).
    c = get_preset("llama3.1-405b")
    assert 6 * c.num_params() * 15.6e12 == pytest.approx(3.8e25, rel=0.01)
    # at 8K context the attention term adds 12*L*H*D*T / (6 N) ~ 8% (PaLM's accounting)
    assert c.flops_per_token(8192) / (6 * c.num_params()) == pytest.approx(1.08, abs=0.01)
    with pytest.raises(ValueError, match="seq_len"):
        c.flops_per_token(0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(dim=100, n_heads=8), r"dim \(100\) must be divisible by n_heads \(8\)"),
        (dict(n_heads=8, n_kv_heads=3, dim=64), r"n_heads \(8\) must be divisible by n_kv_heads \(3\)"),
        (dict(dim=48, n_heads=16), "head_dim = dim // n_heads = 3 must be even"),
        (dict(n_layers=0), "n_layers must be a positive integer"),
        (dict(vocab_size=-5), "vocab_size must be a positive integer"),
        (dict(dim=64.0), "dim must be a positive integer"),
        (dict(norm_eps=0), "norm_eps must be a positive number"),
        (dict(ffn_dim_multiplier=-1.0), "ffn_dim_multiplier must be a positive number or None"),
        (dict(use_scaled_rope=True, rope_low_freq_factor=4.0, rope_high_freq_factor=1.0),
         "rope_high_freq_factor .* must be greater than rope_low_freq_factor"),
    ],
)
def test_invalid_configs_raise_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**fields)


def test_n_kv_heads_defaults_to_n_heads():
    assert ModelConfig(dim=64, n_heads=4).n_kv_heads == 4


def test_dict_and_json_roundtrip(tmp_path):
    for config in PRESETS.values():
        assert ModelConfig.from_dict(config.to_dict()) == config
        assert ModelConfig.from_json(config.to_json()) == config
    path = tmp_path / "config.json"
    get_preset("tiny").to_json(path)
    assert ModelConfig.from_json(path) == get_preset("tiny")
    assert "head_dim" not in json.loads(path.read_text())


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['n_layer'\]"):
        ModelConfig.from_dict({"n_layer": 2})


def test_from_params_json_ignores_metas_runtime_keys_and_takes_overrides(tmp_path):
    params = {**get_preset("llama3.1-8b").to_params_json(), "max_batch_size": 4, "quantization_args": {}}
    (tmp_path / "params.json").write_text(json.dumps(params))
    config = ModelConfig.from_params_json(tmp_path / "params.json", max_seq_len=4096)
    assert config == get_preset("llama3.1-8b", max_seq_len=4096)
    with pytest.raises(FileNotFoundError, match="no params.json"):
        ModelConfig.from_params_json(tmp_path / "missing")


def test_get_preset_overrides_and_errors():
    assert get_preset("tiny", n_layers=6).n_layers == 6
    assert get_preset("tiny", n_layers=6).num_params() > get_preset("tiny").num_params()
    with pytest.raises(ValueError, match="unknown model preset 'llama4'; choose one of: nano, tiny, small-100m"):
        get_preset("llama4")
    with pytest.raises(ValueError, match="divisible"):
        get_preset("tiny", n_heads=7)


def test_our_presets_have_the_advertised_sizes():
    assert get_preset("nano").num_params() < 200_000
    assert 2e6 < get_preset("tiny").num_params() < 10e6
    assert get_preset("small-100m").vocab_size == 32768
    assert 95e6 < get_preset("small-100m").num_params() < 105e6


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("nano").dim = 128
