"""Every differentiable op of minillama.autograd: gradients vs central finite differences (float64, hypothesis-generated
broadcasting shapes) and values + gradients vs torch.autograd in float64 to 1e-8 relative."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

from minillama.autograd import Tensor, cat, gradcheck, stack, where
from minillama.autograd import functional as F

RTOL, ATOL = 1e-8, 1e-12  # float64 agreement with torch
FAST = settings(deadline=None, max_examples=20, derandomize=True)


def compare_with_torch(ours: Callable[..., Any], theirs: Callable[..., Any], arrays: list[np.ndarray]) -> None:
    """Run both engines on float64 copies of ``arrays``, backprop the same random weighting of the output, and check
    output and every input gradient agree to RTOL."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    ours_in = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = ours(*ours_in), theirs(*theirs_in)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg="forward values")
    weights = np.random.default_rng(1).standard_normal(ref.shape)
    (out * weights).sum().backward()
    (ref * torch.from_numpy(weights)).sum().backward()
    for i, (a, b) in enumerate(zip(ours_in, theirs_in, strict=True)):
        expected = np.zeros(a.shape) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"gradient of input {i}")


def check(ours: Callable[..., Any], theirs: Callable[..., Any], arrays: list[np.ndarray]) -> None:
    gradcheck(ours, [np.array(a, dtype=np.float64) for a in arrays])
    compare_with_torch(ours, theirs, arrays)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


# ---------------------------------------------------------------------------------------------------------------------
# Binary arithmetic with broadcasting

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "radd_const": lambda a, b: 2.5 + a * b,
    "rsub_const": lambda a, b: 1.5 - a / b,
    "rdiv_const": lambda a, b: 3.0 / b + a,
    "square_rsqrt": lambda a, b: a**2 + b**-0.5,
}


@pytest.mark.parametrize("name", list(BINARY))
@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3), seed=st.integers(0, 99))
def test_binary_ops_broadcast(name: str, shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape_a, shape_b = shapes.input_shapes
    a = rng.uniform(0.5, 2.0, shape_a) if name == "pow" else rng.standard_normal(shape_a)
    b = np.abs(away_from_zero(rng, shape_b)) if name in ("pow", "square_rsqrt") else away_from_zero(rng, shape_b)
    check(BINARY[name], BINARY[name], [a, b])


# ---------------------------------------------------------------------------------------------------------------------
# Elementwise functions

UNARY = {
    "neg": (lambda a: -a, lambda a: -a, "any"),
    "exp": (lambda a: a.exp(), lambda a: a.exp(), "any"),
    "log": (lambda a: a.log(), lambda a: a.log(), "positive"),
    "sqrt": (lambda a: a.sqrt(), lambda a: a.sqrt(), "positive"),
    "tanh": (lambda a: a.tanh(), lambda a: a.tanh(), "any"),
    "sigmoid": (lambda a: a.sigmoid(), lambda a: a.sigmoid(), "any"),
    "silu": (F.silu, torch_F.silu, "any"),
    "relu": (lambda a: a.relu(), lambda a: a.relu(), "away_from_zero"),
}


@pytest.mark.parametrize("name", list(UNARY))
@FAST
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=4), seed=st.integers(0, 99))
def test_unary_ops(name: str, shape: tuple[int, ...], seed: int) -> None:
    ours, theirs, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    if domain == "positive":
        a = rng.uniform(0.2, 3.0, shape)
    elif domain == "away_from_zero":
        a = away_from_zero(rng, shape)
    else:
        a = 3 * rng.standard_normal(shape)
    check(ours, theirs, [a])


def test_sigmoid_and_silu_tails_match_torch() -> None:
    a = np.array([-800.0, -40.0, -10.0, 0.0, 10.0, 40.0, 800.0])
    compare_with_torch(lambda x: x.sigmoid(), lambda x: x.sigmoid(), [a])
    compare_with_torch(F.silu, torch_F.silu, [a])


# ---------------------------------------------------------------------------------------------------------------------
# Reductions

axes_and_shape = array_shapes(min_dims=1, max_dims=3, max_side=4).flatmap(
    lambda shape: st.tuples(
        st.just(shape),
        st.one_of(
            st.none(),
            st.integers(-len(shape), len(shape) - 1),
            st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True).map(tuple),
        ),
        st.booleans(),
    )
)


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@FAST
@given(case=axes_and_shape, seed=st.integers(0, 99))
def test_reductions(name: str, case: Any, seed: int) -> None:
    shape, axis, keepdims = case
    a = np.random.default_rng(seed).standard_normal(shape)  # continuous values: no ties in max

    def ours(x: Tensor) -> Tensor:
        return getattr(x, name)(axis, keepdims)

    def theirs(x: torch.Tensor) -> torch.Tensor:
        dim = tuple(range(x.ndim)) if axis is None else axis
        return x.amax(dim=dim, keepdim=keepdims) if name == "max" else getattr(x, name)(dim=dim, keepdim=keepdims)

    check(ours, theirs, [a])


def test_max_splits_the_gradient_between_ties() -> None:
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]]), requires_grad=True)
    x.max(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_torch_style_dim_and_keepdim_names() -> None:
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert x.sum(dim=1, keepdim=True).shape == (2, 1)
    assert x.mean(1).shape == (2,)
    with pytest.raises(TypeError, match="either axis or dim"):
        x.sum(axis=0, dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Matrix multiplication


@FAST
@given(
    batch=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
    m=st.integers(1, 3), k=st.integers(1, 3), n=st.integers(1, 3), seed=st.integers(0, 99),
)
def test_matmul_batched_broadcast(batch: Any, m: int, k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape_a, shape_b = batch.input_shapes
    a, b = rng.standard_normal((*shape_a, m, k)), rng.standard_normal((*shape_b, k, n))
    check(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3,)), ((3,), (2, 3, 4)),
                                    ((2, 4, 3), (3, 5)), ((5, 3), (2, 3, 2))])
def test_matmul_vectors_and_linear_layout(shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    rng = np.random.default_rng(0)
    check(lambda x, y: x @ y, lambda x, y: x @ y, [rng.standard_normal(s) for s in shapes])


# ---------------------------------------------------------------------------------------------------------------------
# Shapes, indexing, cat, stack, where


SHAPE_CASES = {
    "reshape": ((2, 3, 4), lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1)),
    "view_tuple": ((2, 3, 4), lambda x: x.view((6, 4)), lambda x: x.reshape(6, 4)),
    "transpose": ((2, 3, 4), lambda x: x.transpose(0, 2), lambda x: x.transpose(0, 2)),
    "swapaxes_neg": ((2, 3, 4), lambda x: x.swapaxes(-1, -2), lambda x: x.transpose(-1, -2)),
    "permute": ((2, 3, 4), lambda x: x.permute(1, 2, 0), lambda x: x.permute(1, 2, 0)),
    "T": ((3, 4), lambda x: x.T * 2, lambda x: x.T * 2),
    "expand": ((3, 1), lambda x: x.expand(2, 3, 4), lambda x: x.expand(2, 3, 4)),
    "expand_keep": ((1, 3, 1), lambda x: x.expand(2, -1, 5), lambda x: x.expand(2, -1, 5)),
    "unsqueeze_squeeze": ((3, 4), lambda x: x.unsqueeze(1).squeeze(1).unsqueeze(-1),
                          lambda x: x.unsqueeze(1).squeeze(1).unsqueeze(-1)),
    "flatten": ((2, 3, 4), lambda x: x.flatten(1), lambda x: x.flatten(1)),
    "repeat_kv": ((2, 3, 2, 4), lambda x: x[:, :, :, None, :].expand(2, 3, 2, 3, 4).reshape(2, 3, 6, 4),
                  lambda x: x[:, :, :, None, :].expand(2, 3, 2, 3, 4).reshape(2, 3, 6, 4)),
    "int_index": ((3, 4), lambda x: x[1], lambda x: x[1]),
    "slices": ((3, 4, 5), lambda x: x[1:, ::2, -2:], lambda x: x[1:, ::2, -2:]),
    "ellipsis_none": ((3, 4), lambda x: x[..., None, 1:3], lambda x: x[..., None, 1:3]),
    "gather_repeats": ((4, 3), lambda x: x[np.array([0, 2, 0, 0])], lambda x: x[torch.tensor([0, 2, 0, 0])]),
    "gather_2d_ids": ((5, 3), lambda x: x[np.array([[1, 1], [4, 0]])], lambda x: x[torch.tensor([[1, 1], [4, 0]])]),
    "mixed_index": ((3, 4), lambda x: x[:, [1, 1, 3]], lambda x: x[:, [1, 1, 3]]),
    "pairs_index": ((3, 4), lambda x: x[np.array([0, 2, 2]), np.array([1, 1, 3])],
                    lambda x: x[torch.tensor([0, 2, 2]), torch.tensor([1, 1, 3])]),
    "tensor_index": ((4, 3), lambda x: x[Tensor(np.array([3, 3]))], lambda x: x[torch.tensor([3, 3])]),
    "bool_mask": ((3, 4), lambda x: x[np.arange(12).reshape(3, 4) % 3 == 0],
                  lambda x: x[torch.arange(12).reshape(3, 4) % 3 == 0]),
}


@pytest.mark.parametrize("name", list(SHAPE_CASES))
def test_shape_and_indexing_ops(name: str) -> None:
    shape, ours, theirs = SHAPE_CASES[name]
    check(ours, theirs, [np.random.default_rng(0).standard_normal(shape)])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack(dim: int) -> None:
    rng = np.random.default_rng(0)
    sizes = [(2, 3), (2, 3), (2, 3)]
    cat_sizes = [(1, 3), (2, 3), (3, 3)] if dim == 0 else [(2, 1), (2, 2), (2, 4)]
    check(lambda *xs: cat([xs[0], xs[1] * 2, xs[2]], dim=dim), lambda *xs: torch.cat([xs[0], xs[1] * 2, xs[2]], dim),
          [rng.standard_normal(s) for s in cat_sizes])
    check(lambda *xs: stack(list(xs), dim=dim), lambda *xs: torch.stack(list(xs), dim),
          [rng.standard_normal(s) for s in sizes])


def test_where_and_masked_fill_broadcast() -> None:
    rng = np.random.default_rng(0)
    condition = rng.random((3, 4)) > 0.5
    check(lambda a, b: where(condition, a, b), lambda a, b: torch.where(torch.from_numpy(condition), a, b),
          [rng.standard_normal((3, 1)), rng.standard_normal((4,))])
    check(lambda a, b: where(Tensor(condition), a * b, 0.5),
          lambda a, b: torch.where(torch.from_numpy(condition), a * b, 0.5),
          [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))])
    mask = np.triu(np.ones((4, 4), dtype=bool), k=1)
    check(lambda a: a.masked_fill(mask, -1e9).exp(), lambda a: a.masked_fill(torch.from_numpy(mask), -1e9).exp(),
          [rng.standard_normal((2, 4, 4))])


def test_cast_round_trip_keeps_gradient_dtype() -> None:
    x = Tensor(np.linspace(-1, 1, 5), requires_grad=True)
    (x.float() * 3).double().sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, 3.0)


# ---------------------------------------------------------------------------------------------------------------------
# Fused functional ops


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_and_log_softmax(dim: int) -> None:
    a = 4 * np.random.default_rng(0).standard_normal((3, 4, 5))
    check(lambda x: F.softmax(x, dim), lambda x: torch.softmax(x, dim), [a])
    check(lambda x: F.log_softmax(x, dim), lambda x: torch.log_softmax(x, dim), [a])
    check(lambda x: F.softmax_composed(x, dim), lambda x: torch.softmax(x, dim), [a])


def test_softmax_is_stable_for_huge_logits() -> None:
    x = Tensor(np.array([[1000.0, 1001.0, -1000.0]], dtype=np.float32), requires_grad=True)
    y = F.log_softmax(x)
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(F.softmax(x).data))
    np.testing.assert_allclose(y.data, torch.log_softmax(torch.tensor(x.data), -1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_ignore_index(reduction: str) -> None:
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((6, 5))
    targets = np.array([0, 4, -100, 2, 2, -100])
    check(lambda x: F.cross_entropy(x, targets, reduction=reduction),
          lambda x: torch_F.cross_entropy(x, torch.from_numpy(targets), reduction=reduction), [logits])
    targets = np.where(targets < 0, 1, targets)
    check(lambda x: F.cross_entropy(x, targets, ignore_index=2, reduction=reduction),
          lambda x: torch_F.cross_entropy(x, torch.from_numpy(targets), ignore_index=2, reduction=reduction), [logits])


def test_cross_entropy_rejects_bad_shapes_and_targets() -> None:
    logits = Tensor(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"logits \(N, C\) and targets \(N,\)"):
        F.cross_entropy(logits, np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(IndexError, match="target 7 is outside"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([1, 7]))
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([1.0, 2.0]))


def test_linear_with_and_without_bias() -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    check(F.linear, torch_F.linear, [x, w, b])
    check(lambda x, w: F.linear(x, w), lambda x, w: torch_F.linear(x, w), [x, w])


def test_rms_norm() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6)), rng.standard_normal(6)
    check(lambda x, w: F.rms_norm(x, (6,), w, eps=1e-5), lambda x, w: torch_F.rms_norm(x, (6,), w, eps=1e-5), [x, w])
    check(lambda x: F.rms_norm(x, 6), lambda x: torch_F.rms_norm(x, (6,), eps=1e-6), [x])
    w2 = rng.standard_normal((3, 6))
    check(lambda x, w: F.rms_norm(x, (3, 6), w), lambda x, w: torch_F.rms_norm(x, (3, 6), w, eps=1e-6), [x, w2])


def test_embedding_scatter_adds_repeated_ids() -> None:
    weight = np.random.default_rng(0).standard_normal((6, 4))
    ids = np.array([[1, 5, 1], [0, 1, 5]])
    check(lambda w: F.embedding(ids, w), lambda w: torch_F.embedding(torch.from_numpy(ids), w), [weight])
    with pytest.raises(IndexError, match=r"\[0, 6\)"):
        F.embedding(np.array([6]), Tensor(weight))


SDPA_SHAPES = [
    ((2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 4)),  # (B, H, T, D), self-attention
    ((1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 6)),  # value dim differs
    ((2, 3, 4), (2, 3, 4), (2, 3, 4)),  # no head axis
]


@pytest.mark.parametrize("shapes", SDPA_SHAPES)
@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_scaled_dot_product_attention(shapes: Any, is_causal: bool, impl: str) -> None:
    rng = np.random.default_rng(0)
    ours = F.scaled_dot_product_attention if impl == "fused" else F.scaled_dot_product_attention_composed
    check(lambda q, k, v: ours(q, k, v, is_causal=is_causal),
          lambda q, k, v: torch_F.scaled_dot_product_attention(q, k, v, is_causal=is_causal),
          [rng.standard_normal(s) for s in shapes])


@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_attention_masks_and_scale(impl: str) -> None:
    rng = np.random.default_rng(1)
    ours = F.scaled_dot_product_attention if impl == "fused" else F.scaled_dot_product_attention_composed
    q, k, v = (rng.standard_normal((2, 2, 4, 3)) for _ in range(3))
    keep = rng.random((4, 4)) > 0.3
    keep[:, 0] = True  # no fully masked row
    check(lambda q, k, v: ours(q, k, v, attn_mask=keep, is_causal=False, scale=0.7),
          lambda q, k, v: torch_F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(keep), scale=0.7),
          [q, k, v])
    additive = rng.standard_normal((2, 1, 4, 4))
    check(lambda q, k, v: ours(q, k, v, attn_mask=additive, is_causal=False),
          lambda q, k, v: torch_F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(additive)),
          [q, k, v])


def test_causal_attention_with_fewer_queries_is_bottom_right_aligned() -> None:
    """With a KV cache the T new queries are the last T positions: query i sees keys 0..S-T+i (Meta's mask)."""
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((1, 2, 2, 4)), rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((1, 2, 5, 4))
    keep = np.tril(np.ones((2, 5), dtype=bool), k=3)
    for impl in (F.scaled_dot_product_attention, F.scaled_dot_product_attention_composed):
        check(lambda q, k, v, impl=impl: impl(q, k, v, is_causal=True),
              lambda q, k, v: torch_F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(keep)),
              [q, k, v])


def test_fused_and_composed_attention_agree_and_gqa_by_broadcasting() -> None:
    """Grouped-query attention with k/v heads broadcast over a group axis equals repeating the k/v heads."""
    rng = np.random.default_rng(3)
    B, n_kv, n_rep, T, D = 2, 2, 3, 5, 4  # batch, kv heads, queries per kv head, time, head dim
    q = rng.standard_normal((B, n_kv, n_rep, T, D))
    k, v = rng.standard_normal((B, n_kv, 1, T, D)), rng.standard_normal((B, n_kv, 1, T, D))

    def repeated(q: Any, k: Any, v: Any) -> Any:
        return torch_F.scaled_dot_product_attention(q, k.expand(-1, -1, n_rep, -1, -1),
                                                    v.expand(-1, -1, n_rep, -1, -1), is_causal=True)

    check(F.scaled_dot_product_attention, repeated, [q, k, v])
    check(F.scaled_dot_product_attention_composed, repeated, [q, k, v])
    with pytest.raises(ValueError, match="repeat the key/value heads"):
        F.scaled_dot_product_attention(Tensor(np.zeros((1, 4, 3, 2))), Tensor(np.zeros((1, 3, 3, 2))),
                                       Tensor(np.zeros((1, 3, 3, 2))))


def llama_block_loss(F: Any, tokens: Any, targets: Any, emb: Any, norm1: Any, wq: Any, wk: Any, wv: Any, wo: Any,
                     norm2: Any, w1: Any, w2: Any, w3: Any) -> Any:
    """One pre-norm Llama block with a tied output head, written once for both engines: ``F`` is either
    ``minillama.autograd.functional`` or ``torch.nn.functional`` (the same names and argument orders)."""
    B, T = tokens.shape  # batch, time
    dim, n_heads = emb.shape[1], 2
    h = F.embedding(tokens, emb)  # (B, T, dim)
    x = F.rms_norm(h, (dim,), norm1, eps=1e-5)
    q, k, v = (F.linear(x, w).reshape(B, T, n_heads, dim // n_heads).transpose(1, 2) for w in (wq, wk, wv))
    attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
    h = h + F.linear(attn.transpose(1, 2).reshape(B, T, dim), wo)  # (B, H, T, D) -> (B, T, dim)
    x = F.rms_norm(h, (dim,), norm2, eps=1e-5)
    h = h + F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
    logits = F.linear(h, emb)  # tied head: (B, T, vocab)
    return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-100)


def test_a_whole_llama_block_against_finite_differences_and_torch() -> None:
    rng = np.random.default_rng(4)
    vocab, dim, hidden, B, T = 7, 4, 6, 2, 3
    tokens = rng.integers(0, vocab, (B, T))
    targets = np.roll(tokens, -1, axis=1)
    targets[:, -1] = -100
    shapes = [(vocab, dim), (dim,), (dim, dim), (dim, dim), (dim, dim), (dim, dim), (dim,), (hidden, dim),
              (dim, hidden), (hidden, dim)]
    weights = [rng.standard_normal(s) * (1.0 if len(s) == 1 else 0.7) for s in shapes]
    check(lambda *w: llama_block_loss(F, tokens, targets, *w),
          lambda *w: llama_block_loss(torch_F, torch.from_numpy(tokens), torch.from_numpy(targets), *w), weights)
