"""Elementwise arithmetic, elementwise functions, reductions and matrix multiplication.

Each class is one op: ``forward`` computes the value with numpy, ``backward`` applies the local derivative to the
incoming gradient ``grad`` (the gradient of the loss with respect to the op's output). Binary ops broadcast their
inputs, so their ``backward`` passes each gradient through :func:`unbroadcast` to sum it back to the input's shape.
Inputs that are plain Python numbers or numpy arrays are constants: ``needs_input_grad`` is False for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .tensor import Context, Function, unbroadcast

# --------------------------------------------------------------------------------------------------------------------
# Binary arithmetic:  d(a+b) = da + db,  d(a*b) = b da + a db,  d(a/b) = da/b - a db/b^2,  d(a^b) = b a^(b-1) da + ...


class Add(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.add(a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        shape_a, shape_b = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad, shape_a) if need_a else None, unbroadcast(grad, shape_b) if need_b else None)


class Sub(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        shape_a, shape_b = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad, shape_a) if need_a else None, unbroadcast(-grad, shape_b) if need_b else None)


class Mul(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (
            unbroadcast(grad * b, np.shape(a)) if need_a else None,
            unbroadcast(grad * a, np.shape(b)) if need_b else None,
        )


class Div(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        out = np.divide(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        grad_over_b = grad / b
        return (
            unbroadcast(grad_over_b, np.shape(a)) if need_a else None,
            unbroadcast(-grad_over_b * out, np.shape(b)) if need_b else None,  # -g a/b^2 = -(g/b) (a/b)
        )


class Pow(Function):
    """``a ** b``; either side may be a constant. The exponent's gradient ``a^b log a`` is taken as 0 where a <= 0."""

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        out = np.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        grad_a = grad_b = None
        if need_a:
            if np.ndim(b) == 0 and b == 2:
                local = 2 * a
            elif np.ndim(b) == 0 and b == -0.5:  # rsqrt, used by normalisation layers
                local = -0.5 * out / a
            else:
                local = b * np.power(a, b - 1)
            grad_a = unbroadcast(grad * local, np.shape(a))
        if need_b:
            log_a = np.log(np.where(np.greater(a, 0), a, 1))
            grad_b = unbroadcast(grad * out * log_a, np.shape(b))
        return grad_a, grad_b


class Neg(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.negative(a)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        return (-grad,)


# --------------------------------------------------------------------------------------------------------------------
# Elementwise functions: the gradient is grad * f'(a), with f' written through the saved output where that is cheaper


class Exp(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (out,) = ctx.saved_tensors
        return (grad * out,)  # d e^a = e^a da


class Log(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (a,) = ctx.saved_tensors
        return (grad / a,)  # d log a = da / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (out,) = ctx.saved_tensors
        return (grad / (2 * out),)  # d sqrt(a) = da / (2 sqrt(a))


class Tanh(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (out,) = ctx.saved_tensors
        return (grad * (1 - out * out),)  # d tanh a = (1 - tanh^2 a) da


def stable_sigmoid(a: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^-a)``, accurate in both tails. For very negative ``a`` (below -88 in float32) ``e^-a`` overflows
    to inf and the result is 0, the correct limit, so the overflow warning is silenced."""
    with np.errstate(over="ignore"):
        out = np.negative(a, out=np.empty_like(a))
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = stable_sigmoid(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (s,) = ctx.saved_tensors
        return (grad * s * (1 - s),)  # d sigma(a) = sigma (1 - sigma) da


class SiLU(Function):
    """``silu(a) = a * sigmoid(a)`` (the gate of Llama's SwiGLU MLP, {cite}`shazeer2020glu`), fused into one op."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        s = stable_sigmoid(a)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        a, s = ctx.saved_tensors
        local = a * (1 - s)  # d(a s) = s + a s (1 - s) = s (1 + a (1 - s))
        local += 1
        local *= s
        return (grad * local,)


class ReLU(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        positive = a > 0
        ctx.save_for_backward(positive)
        return np.maximum(a, 0)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (positive,) = ctx.saved_tensors
        return (grad * positive,)  # derivative 1 where a > 0, else 0 (0 at a = 0, like torch)


class Cast(Function):
    """Change the dtype; the gradient is cast back to the input's dtype."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        ctx.in_dtype = a.dtype
        return a.astype(dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        return (grad.astype(ctx.in_dtype, copy=False),)


# --------------------------------------------------------------------------------------------------------------------
# Reductions: the gradient of a reduced entry flows back to every input entry that fed it


def _expand_reduced(grad: np.ndarray, axis: Any, keepdims: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Re-insert the reduced axes of ``grad`` (size 1) so it broadcasts against an input of ``shape``."""
    if keepdims or axis is None:
        return grad.reshape((1,) * len(shape)) if axis is None else grad
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return np.expand_dims(grad, tuple(a % len(shape) for a in axes))


def _count(shape: tuple[int, ...], axis: Any) -> int:
    if axis is None:
        return int(np.prod(shape, dtype=np.int64))
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return int(np.prod([shape[a] for a in axes], dtype=np.int64))


class Sum(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return np.sum(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        return (np.broadcast_to(_expand_reduced(grad, ctx.axis, ctx.keepdims, ctx.shape), ctx.shape),)


class Mean(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return np.mean(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        scaled = grad / _count(ctx.shape, ctx.axis)
        return (np.broadcast_to(_expand_reduced(scaled, ctx.axis, ctx.keepdims, ctx.shape), ctx.shape),)


class Max(Function):
    """Maximum over ``axis``; the gradient goes to the maximal entries, split equally between ties."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        out = np.max(a, axis=axis, keepdims=True)
        is_max = a == out
        ctx.save_for_backward(is_max, np.sum(is_max, axis=axis, keepdims=True))
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return out if keepdims else np.squeeze(out, axis=axis)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        is_max, count = ctx.saved_tensors
        grad = _expand_reduced(grad, ctx.axis, ctx.keepdims, ctx.shape)
        return (is_max * (grad / count),)


# --------------------------------------------------------------------------------------------------------------------
# Matrix multiplication


class MatMul(Function):
    """``a @ b`` with numpy's rules: the last two axes multiply, leading axes broadcast, 1-D operands are vectors.

    With ``C = A B``: ``dA = dC B^T`` and ``dB = A^T dC``; the batch axes that broadcasting created are summed away.
    The common ``(..., m, k) @ (k, n)`` case (every linear layer) runs as one 2-D BLAS call in both directions.
    """

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul needs at least 1-D operands, got shapes {a.shape} and {b.shape}; use * instead")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else -1]:
            raise ValueError(
                f"matmul shape mismatch: {a.shape} @ {b.shape} (the last axis of the left operand, "
                f"{a.shape[-1]}, must equal the {'second-to-last' if b.ndim > 1 else 'only'} axis of the right, "
                f"{b.shape[-2 if b.ndim > 1 else -1]})"
            )
        ctx.save_for_backward(a, b)
        if b.ndim == 2 and a.ndim > 2:
            return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        # Treat vectors as matrices: a (k,) -> (1, k), b (k,) -> (k, 1), and give grad the matching axes.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = grad[..., None] if b.ndim == 1 else grad
        g = g[..., None, :] if a.ndim == 1 else g
        grad_a = grad_b = None
        if b2.ndim == 2 and a2.ndim > 2:  # (..., m, k) @ (k, n): fold the batch into the rows
            g_rows = g.reshape(-1, g.shape[-1])
            if need_a:
                grad_a = (g_rows @ b2.T).reshape(a2.shape)
            if need_b:
                grad_b = a2.reshape(-1, a2.shape[-1]).T @ g_rows
        else:
            if need_a:
                grad_a = unbroadcast(np.matmul(g, np.swapaxes(b2, -1, -2)), a2.shape)
            if need_b:
                grad_b = unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g), b2.shape)
        return (
            None if grad_a is None else grad_a.reshape(a.shape),
            None if grad_b is None else grad_b.reshape(b.shape),
        )
