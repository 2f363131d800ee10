"""Ops that move entries around without changing their values: reshape, permute, expand, indexing, cat, stack, where.

Their backward passes route each gradient entry back to the input entry it came from: reshape and permute apply the
inverse rearrangement, expand sums over the copies, indexing scatters (adding where an entry was picked twice),
cat and stack split, where sends the gradient down the branch that was chosen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .tensor import Context, Function, Tensor, unbroadcast


class Reshape(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ctx.in_shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) into {shape}") from None

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad.reshape(ctx.in_shape),)


class Permute(Function):
    """Reorder the axes (``dims[i]`` is the input axis that becomes output axis ``i``); backward applies the inverse."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
        if sorted(d % a.ndim for d in dims) != list(range(a.ndim)):
            raise ValueError(f"permute needs a permutation of the {a.ndim} axes of shape {a.shape}, got {dims}")
        ctx.inverse = tuple(np.argsort([d % a.ndim for d in dims]))
        return np.transpose(a, dims)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        return (np.transpose(grad, ctx.inverse),)


class Expand(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ctx.in_shape = a.shape
        return np.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        return (unbroadcast(grad, ctx.in_shape),)


def _is_basic(index: tuple[Any, ...]) -> bool:
    """Basic indexing (ints, slices, None, ...) picks every entry at most once: the backward can assign, not add."""
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in index)


def normalize_index(index: Any) -> tuple[Any, ...]:
    """Index as a tuple of ints/slices/None/Ellipsis/integer arrays: Tensors unwrapped, boolean masks as nonzero()."""
    parts = index if isinstance(index, tuple) else (index,)
    out: list[Any] = []
    for part in parts:
        if isinstance(part, Tensor):
            part = part.data
        if isinstance(part, list):
            part = np.asarray(part)
        if isinstance(part, np.ndarray) and part.dtype == np.bool_:
            out.extend(np.nonzero(part))
        else:
            out.append(part)
    return tuple(out)


class GetItem(Function):
    """``a[index]``: the gradient is scattered back, ``np.add.at`` summing where integer arrays repeat an entry."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, index: Any) -> np.ndarray:
        index = normalize_index(index)
        ctx.in_shape, ctx.index = a.shape, index
        return a[index]

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        grad_in = np.zeros(ctx.in_shape, dtype=grad.dtype)
        if _is_basic(ctx.index):
            grad_in[ctx.index] = grad
        else:
            np.add.at(grad_in, ctx.index, grad)
        return (grad_in,)


class Cat(Function):
    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, dim: int = 0) -> np.ndarray:
        ctx.dim = dim
        ctx.splits = np.cumsum([a.shape[dim] for a in arrays])[:-1]
        try:
            return np.concatenate(arrays, axis=dim)
        except ValueError:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"cat along dim {dim} needs equal sizes on the other axes; got {shapes}") from None

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.split(grad, ctx.splits, axis=ctx.dim))


class Stack(Function):
    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, dim: int = 0) -> np.ndarray:
        out = np.stack(arrays, axis=dim)
        ctx.dim, ctx.count = dim % out.ndim, len(arrays)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        lead = (slice(None),) * ctx.dim
        return tuple(grad[(*lead, i)] for i in range(ctx.count))


class Where(Function):
    """``condition ? a : b`` elementwise (``a``/``b`` may be constants); each branch gets the gradient where chosen."""

    @staticmethod
    def forward(ctx: Context, condition: Any, a: Any, b: Any) -> np.ndarray:
        condition = np.asarray(condition, dtype=bool)
        ctx.save_for_backward(condition)
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[None, Any, Any]:
        (condition,) = ctx.saved_tensors
        shape_a, shape_b = ctx.shapes
        _, need_a, need_b = ctx.needs_input_grad
        zero = grad.dtype.type(0)
        return (
            None,
            unbroadcast(np.where(condition, grad, zero), shape_a) if need_a else None,
            unbroadcast(np.where(condition, zero, grad), shape_b) if need_b else None,
        )


def cat(tensors: list[Tensor] | tuple[Tensor, ...], dim: int = 0) -> Tensor:
    """Concatenate along an existing axis (torch's ``torch.cat``)."""
    if len(tensors) == 0:
        raise ValueError("cat needs at least one tensor")
    return Cat.apply(*tensors, dim=dim)


def stack(tensors: list[Tensor] | tuple[Tensor, ...], dim: int = 0) -> Tensor:
    """Stack equally shaped tensors along a new axis (torch's ``torch.stack``)."""
    if len(tensors) == 0:
        raise ValueError("stack needs at least one tensor")
    return Stack.apply(*tensors, dim=dim)


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """``input`` where ``condition`` is True, else ``other`` (torch's ``torch.where``; either may be a number)."""
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = Tensor(input)
    return Where.apply(condition.data if isinstance(condition, Tensor) else condition, input, other)
