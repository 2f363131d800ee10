"""Check a backward pass against central finite differences in float64.

For a scalar ``L(x)``, ``dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)`` with an error of order ``eps^2``
(plus round-off of order ``machine_eps / eps``: in float64 with ``eps = 1e-6`` both are around 1e-10 relative).
A tensor-valued ``fn`` is reduced to the scalar ``L = sum(w * fn(x))`` with fixed random weights ``w``, which checks
one random vector-Jacobian product exactly where a backward bug would show up {cite}`baydin2018autodiff`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic gradient of some input disagrees with finite differences."""


def _as_float64_inputs(inputs: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """float64 copies of the float inputs (Tensors keep their requires_grad, arrays are checked) + checked indices."""
    prepared: list[Any] = []
    checked: list[int] = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            prepared.append(Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad))
            if x.requires_grad:
                checked.append(i)
        elif isinstance(x, np.ndarray) and x.dtype.kind == "f":
            prepared.append(Tensor(x.astype(np.float64), requires_grad=True))
            checked.append(i)
        else:
            prepared.append(x)
    return prepared, checked


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    *,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
    raise_exception: bool = True,
) -> bool:
    """Compare ``fn``'s autograd gradients with central differences, for every float input that requires grad.

    ``inputs`` are Tensors (checked if ``requires_grad``), float numpy arrays (always checked) or anything else
    (passed through, e.g. integer targets). Everything is done in float64: ``fn`` must not create float32 tensors
    of its own (build modules with ``dtype=np.float64`` or call ``module.to(np.float64)``).
    Returns True, or raises :class:`GradcheckError` naming the input, the worst entry and both values.
    """
    args, checked = _as_float64_inputs(inputs)
    if not checked:
        raise ValueError("gradcheck: no input requires grad (pass Tensors with requires_grad=True or float arrays)")

    out = fn(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if out.dtype != np.float64:
        raise TypeError(f"gradcheck: fn returned {out.dtype}; every tensor inside fn must be float64")
    weights = np.random.default_rng(seed).standard_normal(out.shape)

    def scalar_loss() -> float:
        with no_grad():
            return float(np.sum(weights * fn(*args).data))

    (out * weights).sum().backward()
    for i in checked:
        x = args[i]
        analytic = np.zeros_like(x.data) if x.grad is None else x.grad
        numerical = np.zeros_like(x.data)
        flat = x.data.reshape(-1)  # a view: perturbing it perturbs the input
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = scalar_loss()
            flat[j] = original - eps
            minus = scalar_loss()
            flat[j] = original
            numerical.reshape(-1)[j] = (plus - minus) / (2 * eps)
        error = np.abs(analytic - numerical)
        bad = error > atol + rtol * np.abs(numerical)
        if bad.any():
            if not raise_exception:
                return False
            worst = np.unravel_index(np.argmax(error - rtol * np.abs(numerical)), x.shape)
            owner = getattr(fn, "__self__", None)  # Function.apply is a classmethod: name the Function
            name = getattr(owner, "__name__", None) or getattr(fn, "__qualname__", "fn")
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {x.shape}) of {name}: {int(bad.sum())} of {x.data.size} "
                f"entries differ by more than atol={atol:g} + rtol={rtol:g} * |numerical|.\n"
                f"  worst entry {tuple(int(k) for k in worst)}: analytic {analytic[worst]:.10g}, "
                f"numerical {numerical[worst]:.10g} (difference {error[worst]:.3g})\n"
                f"  analytic gradient:\n{np.array2string(analytic, precision=6, threshold=40)}\n"
                f"  numerical gradient:\n{np.array2string(numerical, precision=6, threshold=40)}"
            )
    return True
