"""Neural-network functions, torch's ``torch.nn.functional`` for the numpy engine.

Each of ``softmax``, ``log_softmax``, ``cross_entropy``, ``linear``, ``rms_norm`` and ``embedding`` is one fused
``Function``: its backward is derived by hand once (in chapter 1) instead of being recorded op by op, which keeps
fewer arrays alive and runs several times faster. ``softmax_composed`` builds the same softmax from primitive ops;
the tests check the fused and the composed versions against each other, finite differences and PyTorch.
Scaled dot-product attention lives in :mod:`minillama.autograd.attention` and is re-exported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ops
from .attention import scaled_dot_product_attention, scaled_dot_product_attention_composed
from .tensor import Context, Function, Tensor

__all__ = [
    "cross_entropy",
    "embedding",
    "linear",
    "log_softmax",
    "relu",
    "rms_norm",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_composed",
    "sigmoid",
    "silu",
    "softmax",
    "softmax_composed",
    "tanh",
]


def relu(x: Tensor) -> Tensor:
    return ops.ReLU.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    return ops.Sigmoid.apply(x)


def silu(x: Tensor) -> Tensor:
    """``x * sigmoid(x)``, the gate nonlinearity of Llama's SwiGLU feed-forward {cite}`shazeer2020glu`."""
    return ops.SiLU.apply(x)


def tanh(x: Tensor) -> Tensor:
    return ops.Tanh.apply(x)


# --------------------------------------------------------------------------------------------------------------------
# Softmax family


def _stable_exp(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``exp(x - max)`` and the max: subtracting the row maximum changes nothing mathematically and avoids overflow."""
    shift = np.max(x, axis=axis, keepdims=True)
    return np.exp(x - shift), shift


class Softmax(Function):
    """``y_i = e^{x_i} / sum_j e^{x_j}``; backward ``dx = y * (dy - sum_j dy_j y_j)``."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dim: int) -> np.ndarray:
        e, _ = _stable_exp(x, dim)
        e /= np.sum(e, axis=dim, keepdims=True)
        ctx.save_for_backward(e)
        ctx.dim = dim
        return e

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (y,) = ctx.saved_tensors
        dx = grad - np.sum(grad * y, axis=ctx.dim, keepdims=True)
        dx *= y
        return (dx,)


class LogSoftmax(Function):
    """``y_i = x_i - log sum_j e^{x_j}``; backward ``dx = dy - softmax(x) * sum_j dy_j``."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dim: int) -> np.ndarray:
        e, shift = _stable_exp(x, dim)
        out = x - shift  # subtract the two terms one at a time: shift + log(sum) would round in float32
        out -= np.log(np.sum(e, axis=dim, keepdims=True))
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray]:
        (out,) = ctx.saved_tensors
        return (grad - np.exp(out) * np.sum(grad, axis=ctx.dim, keepdims=True),)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim`` (fused op)."""
    return Softmax.apply(x, dim=dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable log-softmax along ``dim`` (fused op)."""
    return LogSoftmax.apply(x, dim=dim)


def softmax_composed(x: Tensor, dim: int = -1) -> Tensor:
    """The same softmax recorded op by op (max, sub, exp, sum, div): the reference the fused op is checked against."""
    e = (x - x.max(dim, keepdims=True).detach()).exp()
    return e / e.sum(dim, keepdims=True)


# --------------------------------------------------------------------------------------------------------------------
# Cross-entropy


class CrossEntropy(Function):
    """Mean negative log-likelihood of the target classes; backward ``(softmax(logits) - onehot(target)) / n``."""

    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, targets: np.ndarray, ignore_index: int, reduction: str) -> Any:
        n, classes = logits.shape
        valid = targets != ignore_index
        safe = np.where(valid, targets, 0)
        if np.any(safe < 0) or np.any(safe >= classes):
            bad = targets[valid & ((targets < 0) | (targets >= classes))]
            raise IndexError(f"cross_entropy: target {int(bad[0])} is outside [0, {classes}) (ignore_index is "
                             f"{ignore_index})")
        e, shift = _stable_exp(logits, -1)
        total = np.sum(e, axis=-1, keepdims=True)
        rows = np.arange(n)
        nll = (np.log(total[:, 0]) - (logits[rows, safe] - shift[:, 0])) * valid  # (N,)
        e /= total  # probabilities
        ctx.save_for_backward(e, safe, valid)
        ctx.reduction = reduction
        ctx.count = int(valid.sum())
        if reduction == "none":
            return nll
        if reduction == "sum":
            return np.sum(nll)
        return np.sum(nll) / ctx.count if ctx.count else np.asarray(np.nan, dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, None, None, None]:
        probs, safe, valid = ctx.saved_tensors
        # "none": one gradient per row; "sum": the same scalar for every row; "mean": that scalar / (valid rows).
        scale = grad / max(ctx.count, 1) if ctx.reduction == "mean" else grad
        weight = scale * valid
        dlogits = probs.copy()
        dlogits[np.arange(len(safe)), safe] -= 1
        dlogits *= weight.astype(probs.dtype, copy=False)[:, None]
        return dlogits, None, None, None


def cross_entropy(
    logits: Tensor, targets: Any, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy between ``logits`` (N, C) and integer ``targets`` (N,), as ``torch.nn.functional.cross_entropy``.

    Targets equal to ``ignore_index`` contribute nothing (padding, prompt tokens); ``reduction`` is ``"mean"`` over the
    other targets, ``"sum"`` or ``"none"``. For a language model reshape first:
    ``cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))``.
    """
    target_array = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if logits.ndim != 2 or target_array.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy expects logits (N, C) and targets (N,); got {logits.shape} and {target_array.shape}. "
            "Flatten the batch and time axes first: logits.reshape(-1, C), targets.reshape(-1)"
        )
    if target_array.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy targets must be integer class indices, got dtype {target_array.dtype}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return CrossEntropy.apply(logits, target_array, ignore_index, reduction)


# --------------------------------------------------------------------------------------------------------------------
# Layers as functions


class Linear(Function):
    """``y = x W^T + b`` over the last axis of ``x``; the leading axes are folded into one BLAS matrix product.

    Backward: ``dx = dy W``, ``dW = dy^T x`` (summed over every row of the batch), ``db = sum of dy over rows``.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear: input has {x.shape[-1]} features (shape {x.shape}) but the weight expects {weight.shape[1]} "
                f"(weight shape {weight.shape} is (out_features, in_features))"
            )
        rows = x.reshape(-1, x.shape[-1])  # (..., in) -> (N, in)
        out = rows @ weight.T  # (N, out)
        if bias is not None:
            out += bias
        ctx.save_for_backward(rows, weight)
        ctx.in_shape = x.shape
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any, Any]:
        rows, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_rows = grad.reshape(-1, grad.shape[-1])  # (..., out) -> (N, out)
        grad_x = (grad_rows @ weight).reshape(ctx.in_shape) if need_x else None
        grad_w = grad_rows.T @ rows if need_w else None
        grad_b = grad_rows.sum(axis=0) if need_b else None
        return grad_x, grad_w, grad_b


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features), like torch."""
    return Linear.apply(x, weight, bias)


class RMSNorm(Function):
    """``y = x / sqrt(mean(x^2) + eps) * w`` over the trailing axes {cite}`zhang2019rmsnorm`.

    With ``r = (mean(x^2) + eps)^{-1/2}``, ``h = dy * w`` and ``N`` normalised entries:
    ``dx = r h - r^3 x mean(h x)`` and ``dw = sum over the batch of dy * x r``.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray | None, axes: tuple[int, ...], eps: float) -> Any:
        r = 1.0 / np.sqrt(np.mean(np.square(x), axis=axes, keepdims=True) + eps)
        normed = x * r
        ctx.save_for_backward(x, r, normed, weight)
        ctx.axes = axes
        return normed * weight if weight is not None else normed

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        x, r, normed, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        h = grad * weight if weight is not None else grad
        grad_x = grad_w = None
        if need_x:
            correction = np.mean(h * x, axis=ctx.axes, keepdims=True) * (r * r * r)
            grad_x = h * r
            grad_x -= x * correction
        if need_w:
            batch_axes = tuple(range(grad.ndim - weight.ndim))
            grad_w = np.sum(grad * normed, axis=batch_axes)
        return grad_x, grad_w


def rms_norm(x: Tensor, normalized_shape: Any, weight: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """RMS normalisation over the trailing ``normalized_shape`` axes (torch's ``F.rms_norm`` argument order)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape) :]) != shape:
        raise ValueError(f"rms_norm: normalized_shape {shape} does not match the trailing axes of input {x.shape}")
    if weight is not None and tuple(weight.shape) != shape:
        raise ValueError(f"rms_norm: weight has shape {weight.shape}, expected {shape}")
    axes = tuple(range(-len(shape), 0))
    return RMSNorm.apply(x, weight, axes=axes, eps=float(eps))


class Embedding(Function):
    """Row lookup ``weight[ids]``; backward scatter-adds each output gradient into the row it came from."""

    @staticmethod
    def forward(ctx: Context, ids: np.ndarray, weight: np.ndarray) -> np.ndarray:
        ctx.ids, ctx.weight_shape = ids, weight.shape
        return np.take(weight, ids, axis=0)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[None, np.ndarray]:
        grad_weight = np.zeros(ctx.weight_shape, dtype=grad.dtype)
        np.add.at(grad_weight, ctx.ids.reshape(-1), grad.reshape(-1, ctx.weight_shape[1]))
        return None, grad_weight


def embedding(ids: Any, weight: Tensor) -> Tensor:
    """Look up rows of ``weight`` (num_embeddings, dim) for integer ``ids`` of any shape: (...) -> (..., dim)."""
    id_array = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if id_array.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {id_array.dtype}")
    if id_array.size and (id_array.min() < 0 or id_array.max() >= weight.shape[0]):
        raise IndexError(f"embedding ids must lie in [0, {weight.shape[0]}); got min {id_array.min()}, "
                         f"max {id_array.max()}")
    return Embedding.apply(id_array, weight)
