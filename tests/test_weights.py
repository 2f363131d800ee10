"""Checkpoint formats: ours, Meta's consolidated (with model-parallel shards) and Hugging Face's, checked against
transformers; bad checkpoints give clear errors; nothing is unpickled."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import pickle

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from minillama.config import PRESETS, ModelConfig, get_preset
from minillama.model import Llama
from minillama.weights import (
    check_state_dict,
    config_from_hf,
    config_to_hf,
    detect_format,
    load_checkpoint,
    load_state,
    merge_meta_shards,
    permute_for_hf,
    permute_from_hf,
    save_checkpoint,
    save_hf,
)

SMALL = ModelConfig(dim=64, n_layers=2, n_heads=8, n_kv_heads=2, vocab_size=300, multiple_of=32,
                    ffn_dim_multiplier=1.3, rope_theta=10000.0, use_scaled_rope=True, rope_original_max_seq_len=32,
                    max_seq_len=256)
# What a Meta params.json can say: no max_seq_len (131072 for a rope-scaled model) and the 3.1 scaling constants.
META_SMALL = dataclasses.replace(SMALL, rope_original_max_seq_len=8192, max_seq_len=131072)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def small_model(seed: int = 0, **overrides) -> Llama:
    torch.manual_seed(seed)
    return Llama(get_preset("nano", **{**SMALL.to_dict(), **overrides})).eval()


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens) if isinstance(model, Llama) else model(tokens).logits


TOKENS = torch.randint(0, 300, (2, 60), generator=torch.Generator().manual_seed(1))


# --- Meta format --------------------------------------------------------------------------------------------------


def split_like_meta(state_dict: dict, ranks: int, embedding_dim: int = 0) -> list[dict]:
    """Split a state dict the way fairscale's model-parallel layers hold it: column-parallel weights by rows, row-
    parallel weights by columns, the embedding by vocabulary rows (Llama 3) or by columns (Llama 1/2), norms copied.
    """
    shards = [{} for _ in range(ranks)]
    for name, tensor in state_dict.items():
        if name.endswith(("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight")) or name == "output.weight":
            parts = tensor.chunk(ranks, dim=0)
        elif name.endswith(("wo.weight", "w2.weight")):
            parts = tensor.chunk(ranks, dim=1)
        elif name == "tok_embeddings.weight":
            parts = tensor.chunk(ranks, dim=embedding_dim)
        else:
            parts = [tensor] * ranks
        for shard, part in zip(shards, parts, strict=True):
            shard[name] = part.clone()
    return shards


def write_meta(folder, config: ModelConfig, shards: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(config.to_params_json()))
    for rank, shard in enumerate(shards):
        torch.save(shard, folder / f"consolidated.{rank:02d}.pth")


@pytest.mark.parametrize("ranks", [1, 2])
def test_meta_checkpoint_to_ours_to_transformers_gives_the_same_logits(tmp_path, ranks):
    model = small_model(**META_SMALL.to_dict())
    shards = split_like_meta(model.state_dict(), ranks)
    if ranks == 2:
        assert shards[0]["layers.0.attention.wq.weight"].shape == (32, 64)
        assert shards[0]["layers.0.attention.wo.weight"].shape == (64, 32)
    write_meta(tmp_path / "meta", META_SMALL, shards)
    assert detect_format(tmp_path / "meta") == "meta"
    loaded = load_checkpoint(tmp_path / "meta")
    assert loaded.config == META_SMALL
    reference = logits(model, TOKENS)
    torch.testing.assert_close(logits(loaded, TOKENS), reference, rtol=0, atol=0)
    save_hf(loaded, tmp_path / "hf")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert (logits(hf, TOKENS) - reference).abs().max() <= 1e-4


def test_merge_handles_llama2_embedding_split_and_checks_replicated_norms():
    model = small_model()
    state = model.state_dict()
    merged = merge_meta_shards(split_like_meta(state, 4, embedding_dim=1), SMALL)
    assert all(torch.equal(merged[k], state[k]) for k in state)
    shards = split_like_meta(state, 2)
    shards[1]["norm.weight"] = shards[1]["norm.weight"] + 1
    with pytest.raises(ValueError, match="norm.weight should be replicated"):
        merge_meta_shards(shards, SMALL)
    shards = split_like_meta(state, 2)
    del shards[1]["layers.1.ffn_norm.weight"]
    with pytest.raises(ValueError, match=r"shard 1 and shard 0 hold different keys: \[layers.1.ffn_norm.weight\]"):
        merge_meta_shards(shards, SMALL)


def test_meta_checkpoint_without_output_weight_loads_tied(tmp_path):
    model = small_model(tie_embeddings=True)
    write_meta(tmp_path, SMALL, [model.state_dict()])
    config, state = load_state(tmp_path)
    assert config.tie_embeddings and "output.weight" not in state


def test_meta_llama32_params_json_gets_the_preset_rope_factor(tmp_path):
    # Meta's params.json for 3.2 records neither its rope factor (32, as in its Hugging Face config) nor the tying
    from minillama.weights import _fill_from_preset

    config = ModelConfig.from_params_json(_params(tmp_path, get_preset("llama3.2-1b")))
    assert config.rope_scaling_factor == 8.0
    filled = _fill_from_preset(config)
    assert filled.rope_scaling_factor == 32.0 and filled.tie_embeddings
    assert _fill_from_preset(SMALL) == SMALL


def _params(folder, config):
    (folder / "params.json").write_text(json.dumps(config.to_params_json()))
    return folder


class Exploit:
    """A pickle payload: unpickling it writes a file (it could as well run any command)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "code ran"))


def test_meta_pth_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    write_meta(tmp_path / "meta", get_preset("nano"), [{"tok_embeddings.weight": Exploit(marker)}])
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(tmp_path / "meta")
    assert not marker.exists()


# --- Hugging Face format ------------------------------------------------------------------------------------------


def test_hf_permutation_roundtrip_and_example():
    w = torch.arange(8.0)[:, None]  # one head of 4 features in 2 heads: rows [a0, b0, a1, b1] per head
    assert permute_for_hf(w, n_heads=2).flatten().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    x = torch.randn(8 * 16, 32)
    torch.testing.assert_close(permute_from_hf(permute_for_hf(x, 8), 8), x)


@pytest.mark.parametrize("tie", [False, True])
def test_hf_save_opens_in_transformers_and_loads_back_exactly(tmp_path, tie):
    model = small_model(tie_embeddings=tie)
    save_hf(model, tmp_path)
    assert detect_format(tmp_path) == "hf"
    hf = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert hf.config.tie_word_embeddings == tie
    assert hf.config.rope_parameters["rope_type"] == "llama3"
    assert (logits(hf, TOKENS) - logits(model, TOKENS)).abs().max() <= 1e-4
    back = load_checkpoint(tmp_path)
    assert back.config == model.config
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


def test_load_a_folder_written_by_transformers(tmp_path):
    torch.manual_seed(0)
    hf_config = LlamaConfig(**{k: v for k, v in config_to_hf(SMALL).items() if k not in ("rope_scaling",)})
    hf = LlamaForCausalLM(hf_config).eval()
    hf.save_pretrained(tmp_path)
    ours = load_checkpoint(tmp_path)
    assert ours.config.ffn_hidden_dim == SMALL.ffn_hidden_dim
    assert (logits(hf, TOKENS) - logits(ours, TOKENS)).abs().max() <= 1e-4


@pytest.mark.parametrize("name", PRESETS)
def test_hf_config_roundtrip(name):
    config = PRESETS[name]
    hf = config_to_hf(config)
    assert LlamaConfig(**hf).intermediate_size == config.ffn_hidden_dim
    back = config_from_hf(hf)
    # HF stores the SwiGLU size, not Meta's (multiple_of, ffn_dim_multiplier): those may differ, the size may not
    assert dataclasses.replace(back, multiple_of=config.multiple_of,
                               ffn_dim_multiplier=config.ffn_dim_multiplier) == config
    assert back.ffn_hidden_dim == config.ffn_hidden_dim


def test_hf_config_errors():
    with pytest.raises(ValueError, match="RoPE type 'yarn' is not supported"):
        config_from_hf({**config_to_hf(SMALL), "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(ValueError, match="not a Llama config"):
        config_from_hf({**config_to_hf(SMALL), "model_type": "mistral"})


def test_hf_unknown_keys_are_named(tmp_path):
    from safetensors.torch import save_file

    save_hf(small_model(), tmp_path)
    from safetensors.torch import load_file

    state = load_file(tmp_path / "model.safetensors")
    state["model.layers.0.self_attn.q_norm.weight"] = torch.ones(8)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"keys a Llama model does not: \[model.layers.0.self_attn.q_norm.weight\]"):
        load_checkpoint(tmp_path)


def test_load_sharded_hf_folder(tmp_path):
    from safetensors.torch import load_file, save_file

    model = small_model()
    save_hf(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    names = sorted(state)
    weight_map = {}
    for index, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        filename = f"model-{index + 1:05d}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, tmp_path / filename)
        weight_map |= dict.fromkeys(part, filename)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    torch.testing.assert_close(logits(load_checkpoint(tmp_path), TOKENS), logits(model, TOKENS), rtol=0, atol=0)


# --- our format ----------------------------------------------------------------------------------------------------


def test_our_format_roundtrip_with_tokenizer(tmp_path):
    model = small_model(tie_embeddings=True)
    tokenizer = tmp_path / "tok" / "tokenizer.model"
    tokenizer.parent.mkdir()
    tokenizer.write_bytes(b"IQ== 0\n")
    (tmp_path / "tok" / "tokenizer.model.json").write_text("{}")
    folder = save_checkpoint(model, tmp_path / "ckpt", tokenizer_file=tokenizer)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.model",
                                                         "tokenizer.model.json"]  # and no temporary files left
    assert detect_format(folder) == "minillama"
    assert ModelConfig.from_json(folder / "config.json") == model.config
    back = load_checkpoint(folder, dtype=torch.bfloat16)
    assert back.tok_embeddings.weight.dtype == torch.bfloat16
    back = load_checkpoint(folder)
    assert all(p.requires_grad for p in back.parameters())  # a loaded model can be trained further
    torch.testing.assert_close(logits(back, TOKENS), logits(model, TOKENS), rtol=0, atol=0)


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    import minillama.weights as checkpoint

    save_checkpoint(small_model(seed=0), tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(small_model(seed=1), tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


# --- errors ---------------------------------------------------------------------------------------------------------


def test_state_dict_errors_name_every_problem():
    state = small_model().state_dict()
    del state["layers.1.feed_forward.w3.weight"]
    state["layers.0.attention.bias"] = torch.zeros(3)
    state["norm.weight"] = torch.ones(65)
    with pytest.raises(ValueError) as error:
        check_state_dict(state, SMALL)
    message = str(error.value)
    assert "missing keys [layers.1.feed_forward.w3.weight]" in message
    assert "unexpected keys [layers.0.attention.bias]" in message
    assert "wrong shapes [norm.weight: (65,) (expected (64,))]" in message


def test_a_checkpoint_for_another_config_is_refused(tmp_path):
    save_checkpoint(small_model(), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(get_preset("nano").to_dict()))
    with pytest.raises(ValueError, match="minillama checkpoint .* does not match the model config: .*wrong shapes"):
        load_checkpoint(tmp_path)


def test_truncated_weights_file(tmp_path):
    save_checkpoint(small_model(), tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is not a valid safetensors file"):
        load_checkpoint(tmp_path)


def test_not_a_checkpoint_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"not a checkpoint folder: .* found \['notes.txt'\]"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps(SMALL.to_dict()))
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        load_checkpoint(tmp_path)
