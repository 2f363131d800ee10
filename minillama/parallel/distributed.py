"""Joining a ``torchrun`` job: the process group, this process's device, and the helpers for "only rank 0 does it".

``torchrun --nproc_per_node N ...`` starts ``N`` copies of the same program and tells each who it is through
environment variables (PyTorch's "env://" rendezvous):

* ``RANK``: this process's index among all processes of the job, ``0 .. WORLD_SIZE - 1``;
* ``WORLD_SIZE``: the number of processes (= GPUs) in the job, over all nodes;
* ``LOCAL_RANK``: the index on this node, ``0 .. N - 1``: it picks the GPU, ``cuda:LOCAL_RANK``;
* ``MASTER_ADDR`` / ``MASTER_PORT``: where rank 0 listens, so that the others can find it.

:func:`init_distributed` reads them, picks the backend (NCCL for CUDA tensors, gloo for CPU tensors: NCCL moves GPU
memory over NVLink and InfiniBand, gloo moves CPU memory over TCP) and joins the process group. Everything else in
:mod:`minillama.parallel` assumes it has been called. Without ``torchrun`` (no ``RANK`` in the environment) it
returns a one-process context and touches nothing, so the same program runs on a laptop.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from minillama.device import resolve_device

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is in the job, and where it computes."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    """``"nccl"`` or ``"gloo"``; ``None`` for a plain single process (no process group)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, writes files and renames checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the torchrun environment variables are set (``RANK`` and ``WORLD_SIZE`` at least)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set: launch with torchrun, which sets "
                             f"{', '.join(ENV_VARS)}")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def device_for(requested: str, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` on its node, for a config's ``device`` field.

    ``"auto"`` or ``"cuda"`` give ``cuda:LOCAL_RANK`` when CUDA is available (one GPU per process), otherwise the CPU;
    ``"cpu"`` is the CPU. Apple's MPS has no collective backend, so it cannot host a process group.
    """
    kind = "cuda" if requested == "auto" and torch.cuda.is_available() else torch.device(
        "cpu" if requested == "auto" else requested).type
    if kind == "cuda":
        resolve_device(requested)  # a missing GPU: the error that says what to use
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()}; launch "
                             f"at most that many processes per node (torchrun --nproc_per_node)")
        return torch.device("cuda", local_rank)
    if kind == "cpu":
        return torch.device("cpu")
    raise ValueError(f"distributed training runs on CUDA GPUs (NCCL) or on CPUs (gloo), not on {kind!r}")


def backend_for(device: torch.device) -> str:
    """NCCL for GPU tensors, gloo for CPU tensors."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: str = "auto", *, group_of_one: bool = False, timeout_s: float = 1800.0
                     ) -> DistributedContext:
    """Join the ``torchrun`` job described by the environment; without torchrun, a one-process context.

    Without torchrun there is no process group, unless ``group_of_one``: then this process starts a group of
    world size 1 on a free local port, which is what FSDP and DDP need to run in a single process (resuming a
    sharded run on one GPU, say). On CUDA the current device is set to ``cuda:LOCAL_RANK`` first, so that NCCL and
    every later ``torch.device("cuda")`` use this process's own GPU. ``timeout_s`` bounds how long a collective
    waits for a missing rank before the job fails, instead of hanging forever.
    """
    if launched_by_torchrun():
        rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
        local_rank = _env_int("LOCAL_RANK", default=rank)
        if not 0 <= rank < world_size:
            raise ValueError(f"RANK ({rank}) must be in [0, WORLD_SIZE={world_size})")
        init_method = "env://"
    elif group_of_one:
        rank, world_size, local_rank = 0, 1, 0
        init_method = f"tcp://127.0.0.1:{free_port()}"
    else:
        return DistributedContext(rank=0, world_size=1, local_rank=0, device=device_for(device, 0), backend=None)
    target = device_for(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    backend = backend_for(target)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=target if target.type == "cuda" else None)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target, backend=backend)


def destroy_distributed() -> None:
    """Leave the process group (a no-op without one). Call it once at the end: NCCL warns about leaked groups."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed(device: str = "auto", *, group_of_one: bool = False) -> Iterator[DistributedContext]:
    """``with distributed() as ctx:``: :func:`init_distributed` on entry, :func:`destroy_distributed` on exit."""
    ctx = init_distributed(device, group_of_one=group_of_one)
    try:
        yield ctx
    finally:
        destroy_distributed()


# --- helpers that work with and without a process group ------------------------------------------------------------


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0 (always true without a process group)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (a no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only, to stderr by default (the log), flushed."""
    if is_main():
        kwargs.setdefault("file", sys.stderr)
        print(*args, **kwargs, flush=True)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (a new tensor; the input is left as it was)."""
    if not dist.is_initialized():
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (any picklable value: a run folder name, a config)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def main_first(local: bool = True) -> Iterator[None]:
    """Run the body on rank 0 (``local``: on each node's local rank 0) first, then on the others.

    For work that fills a cache every rank will read, such as training the tokenizer and tokenizing the corpus:
    one process does it while the others wait, then they find it done instead of all doing it at once.
    """
    first = (int(os.environ.get("LOCAL_RANK", get_rank())) if local else get_rank()) == 0
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for ``MASTER_PORT`` in tests and notebooks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
