"""The engine's behaviour: backward order and accumulation, grad mode, dtypes, clear errors, freed graphs, gradcheck."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

from minillama.autograd import (
    Context,
    Function,
    GradcheckError,
    Tensor,
    enable_grad,
    gradcheck,
    is_grad_enabled,
    manual_seed,
    nn,
    no_grad,
    optim,
    randn,
    tensor,
)
from minillama.autograd import functional as F


def test_hand_computed_gradients_of_a_small_expression() -> None:
    # f(a, b) = (a * b + a) ^ 2 at a=2, b=3: f = 64, df/da = 2 (ab + a)(b + 1) = 64, df/db = 2 (ab + a) a = 32
    a, b = Tensor(2.0, requires_grad=True), Tensor(3.0, requires_grad=True)
    f = (a * b + a) ** 2
    f.backward()
    assert f.item() == 64.0 and a.grad == 64.0 and b.grad == 32.0


def test_diamond_graph_sums_both_paths_and_visits_each_node_once() -> None:
    calls = []

    class Spy(Function):
        @staticmethod
        def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
            return a * 1.0

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
            calls.append(grad.copy())
            return (grad,)

    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    shared = Spy.apply(x)  # used twice below: its gradient must be complete before its backward runs
    y = (shared * 3 + shared.exp()).sum()
    y.backward()
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], 3 + np.exp([1.0, 2.0]))
    np.testing.assert_allclose(x.grad, 3 + np.exp([1.0, 2.0]))


def test_gradients_accumulate_across_backward_calls_until_reset() -> None:
    x = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [2 + 3, -2 + 3])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3, 3])


def test_leaf_gradients_are_owned_copies() -> None:
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()  # Add hands the same array to both inputs
    a.grad *= 10
    np.testing.assert_allclose(b.grad, 1.0)


def test_deep_graph_does_not_hit_the_recursion_limit() -> None:
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001**5000)


def test_non_scalar_backward_needs_a_gradient() -> None:
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"only works on a scalar.*shape \(2, 3\).*gradient="):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but the tensor has shape \(2, 3\)"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_allclose(x.grad, 1.0)


def test_backward_on_a_tensor_without_grad_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor(np.ones(2)) * 2).sum().backward()


def test_matmul_shape_mismatch_names_both_shapes() -> None:
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul shape mismatch: \(2, 3\) @ \(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match="cannot reshape a tensor of shape"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match="linear: input has 3 features"):
        F.linear(a, Tensor(np.ones((5, 4))))


def test_backward_twice_without_retain_graph_is_an_error() -> None:
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * (np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0]))))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_no_grad_and_detach_stop_recording() -> None:
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2
        with enable_grad():
            z = x * 2
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and z.requires_grad and z.grad_fn == "Mul"
    d = (x * 2).detach()
    assert not d.requires_grad and np.shares_memory(d.data, (d * 1).data) is False

    @no_grad()
    def evaluate(t: Tensor) -> Tensor:
        return t * 3

    assert not evaluate(x).requires_grad


def test_dtypes_default_float32_and_float64_is_kept() -> None:
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(3).dtype == np.int64
    assert Tensor(np.zeros(2)).dtype == np.float64
    assert tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert Tensor(np.float64(2.0)).dtype == np.float64
    assert Tensor([1.0]).type_as(Tensor(np.zeros(1))).dtype == np.float64
    with pytest.raises(ValueError, match="only floating-point tensors can require gradients"):
        Tensor(np.arange(3), requires_grad=True)
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = (x * 2.5 + 1).exp().sqrt().log().sigmoid() / 3.0 - x**2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_float32_transformer_block_stays_float32() -> None:
    manual_seed(0)
    B, T, dim, heads = 2, 5, 8, 2  # batch, time, dim, heads
    norm, wq, w1 = nn.RMSNorm(dim), nn.Linear(dim, dim, bias=False), nn.Linear(dim, 16, bias=False)
    w2, emb = nn.Linear(16, dim, bias=False), nn.Embedding(11, dim)
    tokens = np.random.default_rng(0).integers(0, 11, (B, T))
    x = emb(tokens)
    q = wq(norm(x)).reshape(B, T, heads, dim // heads).transpose(1, 2)  # (B, T, dim) -> (B, H, T, D)
    attn = F.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(B, T, dim)
    x = x + w2(F.silu(w1(attn)))
    loss = F.cross_entropy((x @ emb.weight.T).reshape(B * T, 11), tokens.reshape(-1))
    assert loss.dtype == np.float32
    loss.backward()
    for module in (norm, wq, w1, w2, emb):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.dtype == np.float32, name


def test_repr_and_properties() -> None:
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    assert repr(x).startswith("Tensor([[0., 1., 2.],")
    assert "shape=(2, 3), dtype=float32, requires_grad=True" in repr(x)
    assert "grad_fn=Sum" in repr(x.sum(0))
    assert (x.shape, x.ndim, x.dtype, x.numel(), x.size(1), len(x)) == ((2, 3), 2, np.float32, 6, 3, 2)
    assert x.numpy() is x.data and x.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert np.asarray(x) is x.data
    mask = (x > 2).numpy()
    assert mask.dtype == bool and mask.sum() == 3


def test_numpy_array_on_the_left_dispatches_to_tensor() -> None:
    x = Tensor(np.ones(2), requires_grad=True)
    y = np.array([2.0, 3.0]) * x + np.array([1.0, 1.0])
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 3.0])


def test_setitem_is_refused_on_tensors_in_the_graph() -> None:
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place assignment"):
        x[0] = 5.0
    with no_grad():
        x[0] = 5.0
    assert x.data[0] == 5.0


def test_custom_function_with_the_documented_shape() -> None:
    class Cube(Function):
        @staticmethod
        def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
            ctx.save_for_backward(a)
            return a**3

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
            (a,) = ctx.saved_tensors
            return (3 * a**2 * grad,)

    assert gradcheck(Cube.apply, [np.array([0.5, -1.0, 2.0])])


def test_gradcheck_catches_a_wrong_backward_with_a_useful_message() -> None:
    class BadSquare(Function):
        @staticmethod
        def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
            (a,) = ctx.saved_tensors
            return (grad * a,)  # should be 2 a

    expected = r"(?s)input 0 \(shape \(2, 2\)\) of BadSquare.*worst entry.*analytic.*numerical"
    with pytest.raises(GradcheckError, match=expected):
        gradcheck(BadSquare.apply, [np.array([[1.0, 2.0], [3.0, 4.0]])])
    assert not gradcheck(BadSquare.apply, [np.array([1.0, 2.0])], raise_exception=False)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda a: a.float(), [np.ones(2)])


def test_graph_is_freed_after_backward() -> None:
    gc.disable()  # prove that reference counting alone frees the graph (no cycles)
    try:
        x = Tensor(np.ones((4, 4)), requires_grad=True)
        hidden = (x @ x).exp()
        loss = (hidden * 2).sum()
        saved = weakref.ref(hidden._ctx.saved_tensors[0])  # the array Exp keeps for its backward
        node = weakref.ref(hidden)
        del hidden
        assert node() is not None  # still needed by loss's graph
        loss.backward()
        assert node() is None and saved() is None  # freed as soon as backward used them, loss still alive
        assert loss.grad_fn == "Sum"
    finally:
        gc.enable()


def test_no_memory_growth_over_1000_training_steps() -> None:
    manual_seed(0)
    model = nn.ModuleList([nn.Linear(8, 32), nn.Linear(32, 4)])
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    x, y = randn(16, 8), np.random.default_rng(0).integers(0, 4, 16)

    def step() -> float:
        logits = model[1](F.silu(model[0](x)))
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def numpy_bytes() -> int:  # memory held by numpy array buffers (numpy traces them in its own domain)
        numpy_domain = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
        snapshot = tracemalloc.take_snapshot().filter_traces([numpy_domain])
        return sum(stat.size for stat in snapshot.statistics("filename"))

    tracemalloc.start()
    try:
        for _ in range(20):
            step()
        objects_before, before = len(gc.get_objects()), numpy_bytes()
        for _ in range(1000):
            step()
        objects_after, after = len(gc.get_objects()), numpy_bytes()
    finally:
        tracemalloc.stop()
    # One leaked graph per step would keep ~10 kB of arrays and ~50 objects alive: 10 MB and 50,000 objects here.
    assert after - before < 4096, f"numpy buffers grew by {after - before} bytes over 1000 steps"
    assert objects_after - objects_before < 100, f"{objects_after - objects_before} more live objects"
