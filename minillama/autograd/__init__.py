"""A reverse-mode automatic differentiation engine over numpy, with a torch-like API (chapter 1).

    from minillama.autograd import Tensor, nn, optim, no_grad
    from minillama.autograd import functional as F

``Tensor`` records the operations applied to it; ``loss.backward()`` fills ``param.grad`` for every parameter.
``functional`` holds the fused ops a transformer needs (softmax, cross-entropy, RMSNorm, attention), ``nn`` the
layers, ``optim`` the optimizers and the learning-rate schedule, ``gradcheck`` the finite-difference check.
"""

from __future__ import annotations

from . import functional, nn, optim
from .gradcheck import GradcheckError, gradcheck
from .rng import get_rng, manual_seed
from .shape_ops import cat, stack, where
from .tensor import (
    DEFAULT_DTYPE,
    Context,
    Function,
    Tensor,
    arange,
    enable_grad,
    is_grad_enabled,
    no_grad,
    ones,
    randn,
    tensor,
    unbroadcast,
    zeros,
)

__all__ = [
    "DEFAULT_DTYPE",
    "Context",
    "Function",
    "GradcheckError",
    "Tensor",
    "arange",
    "cat",
    "enable_grad",
    "functional",
    "get_rng",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "ones",
    "optim",
    "randn",
    "stack",
    "tensor",
    "unbroadcast",
    "where",
    "zeros",
]
