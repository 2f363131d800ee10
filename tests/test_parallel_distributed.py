"""Joining a torchrun job: environment parsing, device and backend choice, and the helpers without a process group.

The collectives themselves run in tests/test_parallel_training.py (2 processes, gloo); here nothing starts one.
"""

from __future__ import annotations

import socket

import pytest
import torch

from minillama.parallel import distributed
from minillama.parallel.distributed import (
    all_reduce_sum,
    backend_for,
    barrier,
    broadcast_object,
    device_for,
    free_port,
    gather_objects,
    get_rank,
    get_world_size,
    init_distributed,
    is_main,
    launched_by_torchrun,
    main_first,
)


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_without_torchrun_one_process_and_no_group(no_torchrun):
    assert not launched_by_torchrun()
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend, ctx.is_main) == (0, 1, 0, None, True)
    assert ctx.device == torch.device("cpu")
    assert not torch.distributed.is_initialized()


def test_helpers_are_identities_without_a_group(no_torchrun):
    x = torch.arange(3.0)
    assert all_reduce_sum(x) is x
    assert broadcast_object({"a": 1}) == {"a": 1}
    assert gather_objects(7) == [7]
    assert (get_rank(), get_world_size(), is_main()) == (0, 1, True)
    barrier()
    with main_first():
        pass


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_by_torchrun()
    with pytest.raises(ValueError, match=r"RANK \(3\) must be in \[0, WORLD_SIZE=2\)"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match="RANK must be an integer"):
        init_distributed("cpu")


def test_device_and_backend_per_local_rank():
    assert device_for("cpu", 5) == torch.device("cpu")
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 3)) == "nccl"
    with pytest.raises(ValueError, match="not on 'mps'"):
        device_for("mps", 0)
    if torch.cuda.is_available():
        assert device_for("auto", 0) == torch.device("cuda", 0)
        with pytest.raises(ValueError, match="has no GPU"):
            device_for("cuda", torch.cuda.device_count())
    else:
        assert device_for("auto", 1) == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            device_for("cuda", 0)


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
