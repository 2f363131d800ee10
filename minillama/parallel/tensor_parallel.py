"""Tensor parallelism (Megatron-LM, Shoeybi et al. 2019) with sequence parallelism (Korthikanti et al. 2022).

Each of ``tp`` ranks holds a slice of every weight matrix and sees the whole batch: ``wq wk wv`` and ``w1 w3`` are
split by output features (column-wise: whole heads, whole hidden units), ``wo`` and ``w2`` by input features
(row-wise: partial sums, reduce-scattered over positions), and between the two regions each rank keeps ``T / tp``
of the positions (sequence parallelism: ``tp`` times less memory for norms and the residual stream). The embedding
and the head are split over the vocabulary. Expressed with PyTorch's ``DTensor`` layouts as torchtitan does, so
the model file is unchanged and parameters keep their names. Chapter 9 counts the traffic: ``tp`` stays within a
node.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from minillama.config import ModelConfig


def check_tensor_parallel(config: ModelConfig, tp: int, seq_len: int | None = None) -> None:
    """Raise a ``ValueError`` naming the first dimension of ``config`` that ``tp`` ranks cannot split evenly."""
    if tp < 1:
        raise ValueError(f"tensor_parallel must be >= 1, got {tp}")
    if tp == 1:
        return
    checks = [("n_heads", config.n_heads), ("n_kv_heads", config.n_kv_heads),
              ("ffn_hidden_dim", config.ffn_hidden_dim)]
    if seq_len is not None:
        checks.append(("seq_len", seq_len))
    for name, value in checks:
        if value % tp:
            raise ValueError(f"tensor parallelism over {tp} ranks splits {name} ({value}) {tp} ways: it must be "
                             f"divisible by {tp}")
    if config.tie_embeddings:
        raise ValueError("tensor parallelism does not split tied embeddings (the Llama 3.2 1B/3B models); they fit "
                         "on one GPU: use data parallelism alone (--tensor-parallel 1)")


def block_plan() -> dict[str, object]:
    """How one ``TransformerBlock`` is split: the layouts of its weights and of the activations between them.

    ``Shard(1)`` is "split over positions" (sequence parallel), ``Replicate()`` "every rank has all of it".
    """
    return {
        "attention_norm": SequenceParallel(),  # norm weights replicated, activations split over positions
        # the attention's input x: gathered from the positions' slices (all-gather); freqs_cis, start_pos and the
        # cache pass unchanged
        "attention": PrepareModuleInput(input_layouts=(Shard(1), None, None, None),
                                        desired_input_layouts=(Replicate(), None, None, None)),
        "attention.wq": ColwiseParallel(),  # each rank: n_heads / tp query heads
        "attention.wk": ColwiseParallel(),  # ... and n_kv_heads / tp key/value heads
        "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(output_layouts=Shard(1)),  # partial sums -> reduce-scatter over positions
        "ffn_norm": SequenceParallel(),
        "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
        "feed_forward.w1": ColwiseParallel(),  # ffn_hidden_dim / tp hidden units per rank
        "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
    }


def root_plan() -> dict[str, object]:
    """Embeddings, final norm and output head: split over the vocabulary; the logits are gathered whole."""
    return {
        # token ids are the same on every rank; each looks up its vocabulary rows (zeros for the others), and the
        # sum over ranks is reduce-scattered over positions
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        # positions gathered, each rank computes the logits of its vocabulary slice, the slices are gathered
        "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()),
    }


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh) -> nn.Module:
    """Split ``model`` (a ``Llama``) over the ranks of ``tp_mesh`` in place; returns it.

    Every rank of ``tp_mesh`` must feed the same token ids (they form one data-parallel rank): the loader deals
    batches by data-parallel rank. Call before activation checkpointing, ``torch.compile`` and FSDP, which then see
    the split blocks.
    """
    tp = tp_mesh.size()
    check_tensor_parallel(model.config, tp)
    # The gathered logits are a view of a DTensor's local tensor, and FSDP warns about any view that a root module
    # returns (an in-place op on it would skip a backward hook). minillama's loss never modifies logits in place;
    # copying 128K-wide logits to silence the warning would cost more memory than the activations of a block.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for block in model.layers:
        parallelize_module(block, tp_mesh, block_plan())
    parallelize_module(model, tp_mesh, root_plan())
    return model
