"""The ablation switches of ``ModelConfig`` (chapter 11): each against a functional forward written here from the
papers' equations, plus a property only that architecture has (NoPE: the last position cannot see the order of the
tokens before it; post-norm: every block's output has unit RMS; SiLU MLP: the parameter count of SwiGLU)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F

from minillama.config import ABLATION_CHOICES, ModelConfig
from minillama.model import Llama
from minillama.numpy_llama.model import Llama as NumpyLlama
from minillama.rope import apply_rotary_emb, precompute_freqs_cis

BASE = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50, multiple_of=16, rope_theta=10000.0,
                   max_seq_len=16)
SWITCHES = [{}, {"norm_type": "none"}, {"norm_position": "post"}, {"position_encoding": "none"}, {"ffn_type": "silu"}]


def reference_forward(state: dict[str, torch.Tensor], config: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Logits written out from the equations, one switch at a time, with no module of ``minillama.model``."""
    def norm(x, name):
        if config.norm_type == "none":
            return x
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + config.norm_eps) * state[name]

    B, T = tokens.shape  # batch, time
    H, H_kv, D = config.n_heads, config.n_kv_heads, config.head_dim
    freqs = precompute_freqs_cis(config, T)
    x = state["tok_embeddings.weight"][tokens]  # (B, T, dim)
    for i in range(config.n_layers):
        p = f"layers.{i}."

        def attention(h, p=p):
            q = (h @ state[p + "attention.wq.weight"].T).view(B, T, H, D)
            k = (h @ state[p + "attention.wk.weight"].T).view(B, T, H_kv, D)
            v = (h @ state[p + "attention.wv.weight"].T).view(B, T, H_kv, D)
            if config.position_encoding == "rope":
                q, k = apply_rotary_emb(q, freqs), apply_rotary_emb(k, freqs)
            k, v = k.repeat_interleave(H // H_kv, dim=2), v.repeat_interleave(H // H_kv, dim=2)
            scores = torch.einsum("bthd,bshd->bhts", q, k) / D**0.5
            scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
            y = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).reshape(B, T, H * D)
            return y @ state[p + "attention.wo.weight"].T

        def mlp(h, p=p):
            gate = F.silu(h @ state[p + "feed_forward.w1.weight"].T)
            if config.ffn_type == "swiglu":
                gate = gate * (h @ state[p + "feed_forward.w3.weight"].T)
            return gate @ state[p + "feed_forward.w2.weight"].T

        if config.norm_position == "pre":
            x = x + attention(norm(x, p + "attention_norm.weight"))
            x = x + mlp(norm(x, p + "ffn_norm.weight"))
        else:
            x = norm(x + attention(x), p + "attention_norm.weight")
            x = norm(x + mlp(x), p + "ffn_norm.weight")
    return norm(x, "norm.weight") @ state["output.weight"].T


def model_and_tokens(config: ModelConfig, seed: int = 0) -> tuple[Llama, torch.Tensor]:
    torch.manual_seed(seed)
    model = Llama(config).double()
    with torch.no_grad():  # non-trivial norm weights, so that a skipped or misplaced norm shows
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model, torch.randint(0, config.vocab_size, (2, 12))


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "llama")
def test_each_switch_matches_its_equations(switches):
    config = dataclasses.replace(BASE, **switches)
    model, tokens = model_and_tokens(config)
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    state.setdefault("output.weight", state["tok_embeddings.weight"])
    expected = reference_forward(state, config, tokens)
    torch.testing.assert_close(model(tokens), expected, rtol=1e-10, atol=1e-10)
    if switches:  # and it is a different function from Llama's on the same weights
        llama, _ = model_and_tokens(BASE)
        shared = {k: v for k, v in state.items() if k in llama.state_dict() and v.shape == llama.state_dict()[k].shape}
        llama.load_state_dict({**llama.state_dict(), **shared})
        assert not torch.allclose(llama(tokens), model(tokens), atol=1e-3)


def test_defaults_are_llama():
    assert ModelConfig().ablations() == {} and BASE.ablations() == {}
    assert dataclasses.replace(BASE, ffn_type="silu").ablations() == {"ffn_type": "silu"}


def test_nope_cannot_see_the_order_of_earlier_tokens():
    # One layer: its last position attends to the earlier tokens as a set. (With more layers the earlier positions'
    # own causal prefixes differ, which is how a deep NoPE model recovers order: Kazemnejad et al. 2023.)
    tokens = torch.tensor([[3, 7, 11, 19, 23, 5]])
    shuffled = torch.tensor([[19, 3, 23, 11, 7, 5]])  # same prefix tokens, other order, same last token
    for position_encoding, invariant in (("none", True), ("rope", False)):
        config = dataclasses.replace(BASE, n_layers=1, position_encoding=position_encoding)
        model, _ = model_and_tokens(config)
        last, last_shuffled = model(tokens)[0, -1], model(shuffled)[0, -1]
        assert torch.allclose(last, last_shuffled, atol=1e-12) == invariant


def test_post_norm_blocks_output_unit_rms():
    config = dataclasses.replace(BASE, norm_position="post")
    model = Llama(config)  # norm weights 1: each block's output is normalized to RMS 1 at every position
    x = 5 * torch.randn(2, 8, config.dim)
    freqs = precompute_freqs_cis(config, 8)
    for block in model.layers:
        x = block(x, freqs)
        torch.testing.assert_close(x.pow(2).mean(-1), torch.ones(2, 8), rtol=1e-4, atol=1e-4)


def test_silu_mlp_has_swiglus_parameter_count():
    silu = dataclasses.replace(BASE, ffn_type="silu")
    assert silu.ffn_hidden_dim == 3 * BASE.ffn_hidden_dim // 2
    assert silu.num_params() == BASE.num_params() == Llama(silu).num_params()
    names = Llama(silu).state_dict().keys()
    assert "layers.0.feed_forward.w1.weight" in names and not any("w3" in name for name in names)


def test_no_norm_has_no_norm_weights():
    config = dataclasses.replace(BASE, norm_type="none")
    assert not any("norm" in name for name in Llama(config).state_dict())
    assert BASE.num_params() - config.num_params() == (2 * BASE.n_layers + 1) * BASE.dim


@pytest.mark.parametrize("values", list(itertools.product(*ABLATION_CHOICES.values())))
def test_counts_match_the_modules_for_every_combination(values):
    config = dataclasses.replace(BASE, **dict(zip(ABLATION_CHOICES, values, strict=True)))
    assert Llama(config).num_params() == config.num_params()
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_bad_switch_values_and_unsupported_models_say_so():
    with pytest.raises(ValueError, match="norm_type must be one of 'rmsnorm', 'none'"):
        dataclasses.replace(BASE, norm_type="layernorm")
    with pytest.raises(ValueError, match="position_encoding must be one of"):
        dataclasses.replace(BASE, position_encoding="alibi")
    with pytest.raises(ValueError, match="numpy model is Llama 3 only"):
        NumpyLlama(dataclasses.replace(BASE, position_encoding="none"))
