"""Scaled dot-product attention {cite}`vaswani2017attention`, composed from ops and as one fused op.

``softmax(q k^T * scale + mask) v`` over the last two axes of ``q`` (..., T, D), ``k`` (..., S, D), ``v`` (..., S, Dv);
the leading axes (batch, heads) broadcast. Grouped-query attention {cite}`ainslie2023gqa` is done by the caller, by
repeating the key/value heads (or by giving ``k`` and ``v`` a size-1 group axis that broadcasts).

The fused backward, with ``P = softmax(S)``, ``O = P V`` and ``dO`` the incoming gradient:

    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dO * O)),   dQ = scale dS K,   dK = scale dS^T Q

(``rowsum(dP * P) = rowsum(dO * O)`` is the FlashAttention identity {cite}`dao2022flashattention`: a (T, Dv) product
instead of a (T, S) one). Only ``q, k, v, P, O`` are kept for backward, where the composed version keeps every
intermediate (T, S) array.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .tensor import Context, Function, Tensor, unbroadcast


@functools.lru_cache(maxsize=32)
def causal_bias(n_queries: int, n_keys: int, dtype: np.dtype) -> np.ndarray:
    """Additive mask (T, S): 0 where query ``i`` may attend to key ``j``, ``-inf`` where ``j`` lies in its future.

    Queries are the *last* ``T`` positions of the ``S`` keys (bottom-right alignment), so the same mask serves
    training (``T == S``, a lower triangle) and decoding with a KV cache (``T < S``). Example, T=2, S=3::

        [[0, 0, -inf],
         [0, 0,    0]]
    """
    allowed = np.tri(n_queries, n_keys, k=n_keys - n_queries, dtype=bool)
    bias = np.where(allowed, 0.0, -np.inf).astype(dtype)
    bias.setflags(write=False)
    return bias


def _check(q: Any, k: Any, v: Any, is_causal: bool) -> None:
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"attention shapes do not fit: q {q.shape} (..., T, D), k {k.shape} (..., S, D), v {v.shape} (..., S, Dv)"
        )
    try:
        np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(
            f"the leading (batch, head) axes of q {q.shape}, k {k.shape} and v {v.shape} do not broadcast; for "
            "grouped-query attention repeat the key/value heads first so that they match the query heads"
        ) from None
    if is_causal and q.shape[-2] > k.shape[-2]:
        raise ValueError(f"causal attention needs no more queries ({q.shape[-2]}) than keys ({k.shape[-2]})")


def _mask_bias(attn_mask: Any, dtype: np.dtype) -> np.ndarray:
    """A boolean mask (True = may attend, as in torch) becomes 0 / -inf; a float mask is added as it is."""
    mask = np.asarray(attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask)
    if mask.dtype == np.bool_:
        return np.where(mask, 0.0, -np.inf).astype(dtype)
    return mask.astype(dtype, copy=False)


class ScaledDotProductAttention(Function):
    @staticmethod
    def forward(ctx: Context, q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: Any, scale: float) -> np.ndarray:
        scores = np.matmul(q, np.swapaxes(k, -1, -2))  # (..., T, D) @ (..., D, S) -> (..., T, S)
        scores *= scale
        if bias is not None:
            scores += bias
        scores -= np.max(scores, axis=-1, keepdims=True)  # softmax, in place
        probs = np.exp(scores, out=scores)
        probs /= np.sum(probs, axis=-1, keepdims=True)
        out = np.matmul(probs, v)  # (..., T, S) @ (..., S, Dv) -> (..., T, Dv)
        ctx.save_for_backward(q, k, v, probs, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any, Any, None, None]:
        q, k, v, probs, out = ctx.saved_tensors
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        grad_v = unbroadcast(np.matmul(np.swapaxes(probs, -1, -2), grad), v.shape) if need_v else None
        grad_scores = np.matmul(grad, np.swapaxes(v, -1, -2))  # dP (..., T, S)
        grad_scores -= np.sum(grad * out, axis=-1, keepdims=True)  # dP - rowsum(dO * O)
        grad_scores *= probs
        grad_scores *= ctx.scale  # dS, already multiplied by the scale of the forward pass
        grad_q = unbroadcast(np.matmul(grad_scores, k), q.shape) if need_q else None
        grad_k = unbroadcast(np.matmul(np.swapaxes(grad_scores, -1, -2), q), k.shape) if need_k else None
        return grad_q, grad_k, grad_v, None, None


def _bias(q: Tensor, k: Tensor, attn_mask: Any, is_causal: bool) -> np.ndarray | None:
    bias = None
    if is_causal:
        bias = causal_bias(q.shape[-2], k.shape[-2], q.dtype)
    if attn_mask is not None:
        mask_bias = _mask_bias(attn_mask, q.dtype)
        bias = mask_bias if bias is None else bias + mask_bias
    return bias


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Any = None,
    is_causal: bool = True,
    scale: float | None = None,
) -> Tensor:
    """Fused attention with a hand-derived backward (torch's argument names; causal by default, as every attention
    in this book is). ``attn_mask`` is boolean (True = may attend) or additive, broadcastable to (..., T, S);
    ``scale`` defaults to ``1/sqrt(D)``. A fully masked row gives NaN, as in torch."""
    _check(query, key, value, is_causal)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    return ScaledDotProductAttention.apply(query, key, value, _bias(query, key, attn_mask, is_causal), scale)


def scaled_dot_product_attention_composed(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Any = None,
    is_causal: bool = True,
    scale: float | None = None,
) -> Tensor:
    """The same attention recorded op by op (matmul, scale, mask, max, exp, sum, divide, matmul): slower and
    heavier, but every step is an op whose gradient is checked on its own, so it is the reference for the fused one."""
    _check(query, key, value, is_causal)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., T, S)
    bias = _bias(query, key, attn_mask, is_causal)
    if bias is not None:
        scores = scores + bias
    weights = (scores - scores.max(-1, keepdims=True).detach()).exp()  # the shift cancels in the ratio below
    probs = weights / weights.sum(-1, keepdims=True)
    return probs @ value  # (..., T, S) @ (..., S, Dv) -> (..., T, Dv)
