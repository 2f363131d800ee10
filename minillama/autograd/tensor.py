"""The reverse-mode engine: ``Tensor``, ``Function`` and ``backward``.

A ``Tensor`` wraps a numpy array. Every differentiable operation is one ``Function`` subclass with a
``forward(ctx, *arrays)`` that computes the result from plain numpy arrays and a ``backward(ctx, grad)`` that turns
the gradient of the loss with respect to the result into gradients with respect to each input (the chain rule,
{cite}`rumelhart1986backprop`; reverse accumulation, {cite}`griewank2008evaluating`). ``Function.apply`` runs the
forward pass and, when gradients are wanted, records a node linking the output to its inputs. ``Tensor.backward``
sorts the recorded graph topologically and calls each node's ``backward`` once, children before parents, summing
the gradients that reach a tensor along different paths.

The ops themselves live in :mod:`minillama.autograd.ops` (arithmetic, reductions, matmul) and
:mod:`minillama.autograd.shape_ops` (reshape, permute, indexing, cat, where); the methods of ``Tensor`` below are
thin wrappers around them, one obvious place per op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .rng import get_rng

DEFAULT_DTYPE = np.float32

_grad_enabled = True


# --------------------------------------------------------------------------------------------------------------------
# Grad mode


def is_grad_enabled() -> bool:
    """Whether operations currently record a graph for ``backward``."""
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        global _grad_enabled
        self._previous.append(_grad_enabled)
        _grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self._previous.pop()


def no_grad() -> _GradMode:
    """Context manager (or decorator) that stops recording the graph: evaluation, optimizer steps, generation."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Context manager (or decorator) that turns recording back on inside a ``no_grad`` block."""
    return _GradMode(True)


# --------------------------------------------------------------------------------------------------------------------
# Function and its context


class Context:
    """Scratch space shared by one call's ``forward`` and ``backward`` (torch's ``ctx``).

    ``needs_input_grad[i]`` says whether positional input ``i`` needs a gradient, so ``backward`` can skip work;
    ``save_for_backward`` keeps the arrays ``backward`` will need; ops may also set plain attributes (shapes, axes).
    """

    def __init__(
        self, function: type[Function], parents: tuple[Tensor | None, ...], needs_input_grad: tuple[bool, ...]
    ):
        self.function = function
        self.parents = parents
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple[Any, ...] = ()

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved_tensors = arrays


class _FreedContext:
    """Left in place of a node's context once ``backward`` has used it, so its saved arrays can be freed."""

    parents: tuple[Tensor | None, ...] = ()

    def __init__(self, function: type[Function]):
        self.function = function


class Function:
    """One differentiable operation.

    Subclasses define two static methods on numpy arrays::

        class Exp(Function):
            @staticmethod
            def forward(ctx, a):
                out = np.exp(a)
                ctx.save_for_backward(out)
                return out

            @staticmethod
            def backward(ctx, grad):
                (out,) = ctx.saved_tensors
                return (grad * out,)      # d exp(a) / da = exp(a)

    ``backward`` returns one gradient per positional input of ``forward`` (``None`` where the input is not a
    tensor or needs no gradient), each with the shape of that input. It must not modify ``grad`` in place.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run ``forward`` on the arrays inside ``args`` and, if any input requires grad, record the graph node."""
        raw = tuple(a.data if isinstance(a, Tensor) else a for a in args)
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        if _grad_enabled and any(needs):
            ctx = Context(cls, tuple(a if isinstance(a, Tensor) else None for a in args), needs)
            return Tensor._from_op(cls.forward(ctx, *raw, **kwargs), ctx)
        ctx = Context(cls, (), (False,) * len(args))
        return Tensor._from_op(cls.forward(ctx, *raw, **kwargs), None)


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, so it has ``shape`` again.

    If ``a`` of shape ``shape`` was broadcast to ``grad.shape`` in the forward pass, every copy of an element
    contributed to the loss, so its gradient is the sum over the copies. Example: ``a`` (3, 1) + ``b`` (4,) gives
    (3, 4); the gradient of ``a`` is ``grad.sum(axis=1, keepdims=True)`` and that of ``b`` is ``grad.sum(axis=0)``.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    axes = tuple(range(extra)) + stretched
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


# --------------------------------------------------------------------------------------------------------------------
# Tensor


def _axis(axis: Any, dim: Any) -> Any:
    """Accept numpy's ``axis`` or torch's ``dim`` for the same argument."""
    if dim is not None:
        if axis is not None:
            raise TypeError("pass either axis or dim, not both")
        return dim
    return tuple(axis) if isinstance(axis, list) else axis


def _keep(keepdims: bool, keepdim: bool | None) -> bool:
    return keepdims if keepdim is None else keepdim


def _as_array(x: Any) -> Any:
    """Unwrap a Tensor (used for indices and masks, which never carry gradients)."""
    return x.data if isinstance(x, Tensor) else x


class Tensor:
    """An n-dimensional array that remembers how it was computed, so gradients can flow back through it.

    ``Tensor(data)`` converts Python numbers and lists to ``float32`` (floats) or ``int64`` (integers); a numpy
    array is used as it is, without a copy and keeping its dtype (``float64`` arrays give ``float64`` tensors, which
    is what ``gradcheck`` needs); numpy scalars keep their dtype too. Only floating-point tensors can require
    gradients.
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_retains_grad", "__weakref__")
    __array_ufunc__ = None  # make `ndarray * Tensor` call Tensor.__rmul__ instead of numpy's loop

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None):
        if isinstance(data, Tensor):
            data = data.data
        if dtype is not None:
            array = np.asarray(data, dtype=dtype)
        elif isinstance(data, (np.ndarray, np.generic)):
            array = np.asarray(data)
        else:
            array = np.asarray(data)
            if array.dtype.kind == "f":
                array = array.astype(DEFAULT_DTYPE)
        if requires_grad and array.dtype.kind != "f":
            raise ValueError(f"only floating-point tensors can require gradients; this one is {array.dtype}")
        self.data: np.ndarray = array
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._ctx: Context | _FreedContext | None = None
        self._retains_grad = False

    @classmethod
    def _from_op(cls, data: Any, ctx: Context | None) -> Tensor:
        """Fast constructor for op outputs (no dtype conversion)."""
        t = object.__new__(Tensor)
        t.data = data if type(data) is np.ndarray else np.asarray(data)
        t.grad = None
        t.requires_grad = ctx is not None
        t._ctx = ctx
        t._retains_grad = False
        return t

    # ---- array-like properties ----------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None) -> Any:
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors created by the user (parameters, inputs), False for results of recorded ops."""
        return self._ctx is None

    @property
    def grad_fn(self) -> str | None:
        """Name of the op that produced this tensor (``None`` for leaves)."""
        return None if self._ctx is None else self._ctx.function.__name__

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.array(self.data, dtype=dtype, copy=True) if copy else np.asarray(self.data, dtype=dtype)

    def item(self) -> Any:
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> Tensor:
        """A tensor sharing this one's data but cut from the graph (no gradient flows through it)."""
        return Tensor._from_op(self.data, None)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind != "f":
            raise ValueError(f"only floating-point tensors can require gradients; this one is {self.data.dtype}")
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only be changed on leaf tensors; use .detach() first")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor after ``backward`` (leaves always keep theirs)."""
        self._retains_grad = True
        return self

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", precision=4, threshold=50, edgeitems=2, prefix="Tensor(")
        extras = [f"shape={self.shape}", f"dtype={self.dtype}"]
        if self._ctx is not None:
            extras.append(f"grad_fn={self.grad_fn}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"Tensor({body}, {', '.join(extras)})"

    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        return bool(self.data)

    # ---- backward -----------------------------------------------------------------------------------------------
    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        A scalar output seeds the backward pass with 1; a non-scalar one needs ``gradient`` (same shape), the vector
        in the vector-Jacobian product. After the pass the graph's saved arrays are freed unless ``retain_graph``.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the computation had "
                "requires_grad=True, or it was computed under no_grad()"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient only works on a scalar (a loss); this tensor has shape "
                    f"{self.shape}. Reduce it first (e.g. .sum()) or pass gradient= an array of shape {self.shape}"
                )
            seed = np.ones_like(self.data)
        else:
            seed = np.asarray(_as_array(gradient), dtype=self.data.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"gradient has shape {seed.shape} but the tensor has shape {self.shape}")

        grads: dict[int, np.ndarray] = {id(self): seed}
        for node in reversed(_topological_order(self)):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            ctx = node._ctx
            if ctx is None or node._retains_grad:
                _accumulate_grad(node, grad)
                if ctx is None:
                    continue
            if isinstance(ctx, _FreedContext):
                raise RuntimeError(
                    f"trying to backward through the graph a second time (at {ctx.function.__name__}): its saved "
                    "arrays were freed by the first backward(). Pass retain_graph=True to the first call if you "
                    "need to backward twice"
                )
            input_grads = ctx.function.backward(ctx, grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            if len(input_grads) != len(ctx.parents):
                raise RuntimeError(
                    f"{ctx.function.__name__}.backward returned {len(input_grads)} gradients for "
                    f"{len(ctx.parents)} inputs"
                )
            for parent, parent_grad in zip(ctx.parents, input_grads, strict=True):
                if parent is None or parent_grad is None or not parent.requires_grad:
                    continue
                if parent_grad.shape != parent.data.shape:
                    raise RuntimeError(
                        f"{ctx.function.__name__}.backward returned a gradient of shape {parent_grad.shape} for an "
                        f"input of shape {parent.data.shape}"
                    )
                if parent_grad.dtype != parent.data.dtype:
                    parent_grad = parent_grad.astype(parent.data.dtype)
                key = id(parent)
                previous = grads.get(key)
                grads[key] = parent_grad if previous is None else previous + parent_grad
            if not retain_graph:
                node._ctx = _FreedContext(ctx.function)

    # ---- arithmetic ---------------------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return ops.Add.apply(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ops.Add.apply(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return ops.Sub.apply(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ops.Sub.apply(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.Mul.apply(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ops.Mul.apply(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.Div.apply(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.Div.apply(other, self)

    def __pow__(self, exponent: Any) -> Tensor:
        return ops.Pow.apply(self, exponent)

    def __rpow__(self, base: Any) -> Tensor:
        return ops.Pow.apply(base, self)

    def __neg__(self) -> Tensor:
        return ops.Neg.apply(self)

    def __matmul__(self, other: Any) -> Tensor:
        return ops.MatMul.apply(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return ops.MatMul.apply(other, self)

    def matmul(self, other: Any) -> Tensor:
        return ops.MatMul.apply(self, other)

    def pow(self, exponent: Any) -> Tensor:
        return ops.Pow.apply(self, exponent)

    # Comparisons give boolean tensors (masks); they are not differentiable.
    def __lt__(self, other: Any) -> Tensor:
        return Tensor(self.data < _as_array(other))

    def __le__(self, other: Any) -> Tensor:
        return Tensor(self.data <= _as_array(other))

    def __gt__(self, other: Any) -> Tensor:
        return Tensor(self.data > _as_array(other))

    def __ge__(self, other: Any) -> Tensor:
        return Tensor(self.data >= _as_array(other))

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self.data == _as_array(other))

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self.data != _as_array(other))

    def __invert__(self) -> Tensor:
        return Tensor(~self.data)

    # ---- elementwise functions ----------------------------------------------------------------------------------
    def exp(self) -> Tensor:
        return ops.Exp.apply(self)

    def log(self) -> Tensor:
        return ops.Log.apply(self)

    def sqrt(self) -> Tensor:
        return ops.Sqrt.apply(self)

    def rsqrt(self) -> Tensor:
        return ops.Pow.apply(self, -0.5)

    def tanh(self) -> Tensor:
        return ops.Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        return ops.Sigmoid.apply(self)

    def silu(self) -> Tensor:
        return ops.SiLU.apply(self)

    def relu(self) -> Tensor:
        return ops.ReLU.apply(self)

    # ---- reductions (numpy's axis/keepdims or torch's dim/keepdim) ----------------------------------------------
    def sum(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None) -> Tensor:
        return ops.Sum.apply(self, axis=_axis(axis, dim), keepdims=_keep(keepdims, keepdim))

    def mean(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None) -> Tensor:
        return ops.Mean.apply(self, axis=_axis(axis, dim), keepdims=_keep(keepdims, keepdim))

    def max(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None) -> Tensor:
        """Maximum values (like ``numpy.max`` / ``torch.amax``: no indices); ties share the gradient equally."""
        return ops.Max.apply(self, axis=_axis(axis, dim), keepdims=_keep(keepdims, keepdim))

    # ---- shapes -------------------------------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return shape_ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        shape = self.shape
        start, end = start_dim % max(self.ndim, 1), end_dim % max(self.ndim, 1)
        return self.reshape(*shape[:start], -1, *shape[end + 1 :])

    def unsqueeze(self, dim: int) -> Tensor:
        dim = dim if dim >= 0 else dim + self.ndim + 1
        return self.reshape(*self.shape[:dim], 1, *self.shape[dim:])

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(*(n for n in self.shape if n != 1))
        if self.shape[dim] != 1:
            return self
        dim = dim % self.ndim
        return self.reshape(*self.shape[:dim], *self.shape[dim + 1 :])

    def permute(self, *dims: Any) -> Tensor:
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return shape_ops.Permute.apply(self, dims=dims)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swap two axes (torch's ``transpose``; for numpy's axis permutation use ``permute``)."""
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return shape_ops.Permute.apply(self, dims=tuple(dims))

    swapaxes = transpose

    @property
    def T(self) -> Tensor:  # noqa: N802 (numpy's and torch's name)
        return shape_ops.Permute.apply(self, dims=tuple(reversed(range(self.ndim))))

    def expand(self, *shape: Any) -> Tensor:
        """Broadcast to ``shape`` without copying (``-1`` keeps a size); the gradient sums over the copies."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        lead = len(shape) - self.ndim
        target = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        return shape_ops.Expand.apply(self, shape=target)

    def contiguous(self) -> Tensor:
        """No-op kept for torch compatibility (numpy copies when a reshape needs it)."""
        return self

    def __getitem__(self, index: Any) -> Tensor:
        return shape_ops.GetItem.apply(self, index=index)

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.requires_grad and _grad_enabled:
            raise RuntimeError(
                "in-place assignment into a tensor that requires grad would corrupt the graph; build a new tensor "
                "(e.g. with where/masked_fill/cat) or assign under no_grad()"
            )
        self.data[_index_array(index)] = _as_array(value)

    def masked_fill(self, mask: Any, value: float) -> Tensor:
        """Replace the entries where ``mask`` is True by ``value`` (used for attention masks: ``-inf``)."""
        return shape_ops.Where.apply(_as_array(mask), value, self)

    # ---- dtype --------------------------------------------------------------------------------------------------
    def to(self, dtype: Any) -> Tensor:
        return ops.Cast.apply(self, dtype=np.dtype(dtype))

    astype = to

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)


def _index_array(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(_as_array(i) for i in index)
    return _as_array(index)


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors that require grad and lead to ``root``, every tensor after all of its inputs (iterative DFS)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent is not None and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _accumulate_grad(tensor: Tensor, grad: np.ndarray) -> None:
    if tensor.grad is None:
        tensor.grad = np.array(grad, dtype=tensor.data.dtype, copy=True)  # own it: grad may be shared or a view
    else:
        tensor.grad += grad


# --------------------------------------------------------------------------------------------------------------------
# Constructors


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Make a tensor from a number, a list or an array (torch's ``torch.tensor``; arrays are not copied)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def _shape(shape: Sequence[Any]) -> tuple[int, ...]:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def zeros(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def randn(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the engine's generator (seed it with ``manual_seed``)."""
    return Tensor(get_rng().standard_normal(_shape(shape)).astype(dtype), requires_grad=requires_grad)


def arange(*args: Any, dtype: Any = None) -> Tensor:
    return Tensor(np.arange(*args, dtype=dtype))


# The ops subclass Function (defined above) and are called by the Tensor methods at run time.
from . import ops, shape_ops  # noqa: E402
