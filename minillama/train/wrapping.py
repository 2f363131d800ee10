"""Wrap a model for training from outside: activation checkpointing, then ``torch.compile``, block by block.

The model file knows nothing about either (torchtitan's first principle: the model stays a plain single-device
module and every training technique is applied to it from outside, in a fixed order). Both are applied *per
transformer block* and in place, so parameter names, and therefore checkpoints, do not change:

1. **activation checkpointing** (Chen et al. 2016): each block's forward runs under
   ``torch.utils.checkpoint``, which keeps only the block's input and recomputes the inside during the backward
   pass: activation memory drops from ``O(layers x block internals)`` to ``O(layers x dim)`` for about 1/3 more
   compute;
2. **compile** (Ansel et al. 2024): each block is compiled on its own, so the compiler sees one small graph that
   repeats (compiled once, reused ``n_layers`` times), as torchtitan does.

Chapter 9's ``parallelize`` adds data parallelism (DDP or FSDP2) after these two, in the same spirit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint


def apply_activation_checkpointing(model: torch.nn.Module) -> torch.nn.Module:
    """Recompute each block of ``model.layers`` in the backward pass instead of storing its activations."""
    for block in model.layers:
        block.forward = checkpointed(block.forward)
    return model


def checkpointed(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``forward`` run under non-reentrant ``torch.utils.checkpoint``, through a function of our own.

    Not ``functools.partial(checkpoint, forward)``: ``torch.compile`` never starts a graph at ``checkpoint`` (PyTorch
    marks it as a function Dynamo must not trace from), so a compiled block whose forward *is* ``checkpoint`` runs
    eagerly, silently. Called from this function, Dynamo captures the checkpoint as one recomputed region.
    """

    @functools.wraps(forward)
    def run(*args, **kwargs) -> torch.Tensor:
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def compile_blocks(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` each block of ``model.layers`` in place (``nn.Module.compile``: names are unchanged)."""
    for block in model.layers:
        block.compile()
    return model


def wrap_single_device(model: torch.nn.Module, config) -> torch.nn.Module:
    """What one device needs, per ``config`` (a ``TrainConfig``): activation checkpointing, then compile."""
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    if config.compile:
        compile_blocks(model)
    return model
