"""``minillama plan`` vs hand calculations, PyTorch's own bookkeeping (autograd's saved tensors, DTensor's
collectives on 2 CPU processes), and the Llama 3 paper's setup."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch
import torch.nn.functional as F
from _parallel_helpers import spawn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

from minillama import gpus
from minillama.cli import main
from minillama.config import get_preset
from minillama.plan import (
    GPUS,
    activation_bytes,
    block_activation_bytes,
    data_parallel_gbps,
    format_plans,
    fsdp_buffer_bytes,
    fsdp_comm_bytes,
    fsdp_units,
    gpu_for_device_name,
    head_activation_bytes,
    largest_fsdp_unit,
    parse_count,
    plan_grid,
    plan_to_dict,
    plan_training,
    tensor_parallel_comm_bytes,
    tensor_parallel_params,
)

N_8B = 8_030_261_248  # Llama 3.1 8B parameters (checked against Meta's model in test_config)
N_405B = 405_853_388_800
BATCH_16M = 2048 * 8192  # Llama 3's 16M-token batch: 2,048 sequences of 8,192 tokens


def test_8b_model_state_by_hand():
    ddp = plan_training(get_preset("llama3.1-8b"), gpus=8, parallel="ddp")
    assert ddp.memory.weights == N_8B * 2 == 16_060_522_496  # bf16: 16.06 GB
    assert ddp.memory.gradients == N_8B * 2
    assert ddp.memory.optimizer == N_8B * 12 == 96_363_134_976  # fp32 master + m + v
    assert ddp.memory.fsdp_buffers == 0
    fsdp = plan_training(get_preset("llama3.1-8b"), gpus=8, parallel="fsdp")
    assert fsdp.memory.weights == N_8B * 2 // 8 == 2_007_565_312  # sharded 8 ways
    assert fsdp.memory.optimizer == N_8B * 12 // 8
    # FSDP's units: the embedding table, 32 blocks, the final norm with the output head (one all-gather each)
    table, head = 128_256 * 4096, 128_256 * 4096 + 4096
    block = 4096 * 128 * (2 * 32 + 2 * 8) + 3 * 4096 * 14336 + 2 * 4096
    assert fsdp_units(get_preset("llama3.1-8b")) == (table, block, head) == (525_336_576, 218_112_000, 525_340_672)
    assert table + 32 * block + head == N_8B and largest_fsdp_unit(get_preset("llama3.1-8b")) == head
    # unsharded at the start of the backward: the head's bf16 gradient and the fp32 copy its reduce-scatter sends,
    # beside the last block's bf16 weights (kept from the forward); later a block's 2 + 4 bytes beside the next one's 2
    assert fsdp.memory.fsdp_buffers == (2 + 4) * head + 2 * block == 3_588_268_032 > (2 + 4 + 2) * block
    assert ddp.memory.total == sum((16 * N_8B, ddp.memory.activations))


def test_fsdp_units_by_hand():
    """405B's block (3.2B parameters) outweighs the head's unit (2.1B): the buffers are a block's reduce-scatter
    beside the next block; tied embeddings keep their one table in the root with the final norm, gathered through
    the backward with its gradient; a tensor-parallel slice holds ceil(V / tp) rows of each table."""
    config = get_preset("llama3.1-405b")
    d, f, V = 16384, 53248, 128_256
    block = d * 128 * (2 * 128 + 2 * 8) + 3 * d * f + 2 * d  # wq wo, wk wv; w1 w2 w3; two norms
    assert fsdp_units(config) == (V * d, block, V * d + d) and largest_fsdp_unit(config) == block > V * d + d
    assert fsdp_buffer_bytes(config) == (2 + 4 + 2) * block  # 25.6 GB
    small = get_preset("llama3.2-1b")  # tied: one 128,256 x 2,048 table for the embedding and the head
    units = fsdp_units(small)
    assert small.tie_embeddings and units.embedding == 0 and units.head == V * 2048 + 2048
    assert units.head + 16 * units.block == small.num_params()
    assert fsdp_buffer_bytes(small) == 2 * (V * 2048 + 2048) + 2 * V * 2048 + 8 * units.block
    sliced = (16032 * d, (block - 2 * d) // 8 + 2 * d, 16032 * d + d)  # 128,256 / 8 = 16,032 rows
    assert fsdp_units(config, 8) == sliced and fsdp_buffer_bytes(config, 8) == 8 * sliced[1]


def test_activation_formula_by_hand():
    config = get_preset("llama3.1-8b")
    assert block_activation_bytes(config) == 12 * 4096 + 4 * 8 * 128 + 8 * 14336 + 4 * 32 == 168_064
    assert head_activation_bytes(config) == 4 * 4096 + 8 * 128_256
    tokens = 8192
    full = activation_bytes(config, tokens, activation_checkpointing=False)
    assert full == tokens * (32 * 168_064 + 4 * 4096 + 8 * 128_256)
    checkpointed = activation_bytes(config, tokens, activation_checkpointing=True)
    assert checkpointed == tokens * (32 * 2 * 4096 + 168_064 + 4 * 4096 + 8 * 128_256)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The plain tensor that holds a tensor's bytes on this rank: a DTensor's local shard, the tensor inside a
    functional collective's wrapper."""
    from torch.distributed.tensor import DTensor

    while type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        if isinstance(tensor, DTensor):
            tensor = tensor._local_tensor
        else:
            inner, _ = tensor.__tensor_flatten__()
            tensor = getattr(tensor, inner[0])
    return tensor


def _model(config, checkpointing: bool, tp_mesh=None):
    """A bf16 ``Llama``, split over ``tp_mesh`` if given, with full activation checkpointing block by block."""
    from minillama.model import Llama

    torch.manual_seed(0)
    model = Llama(config).to(torch.bfloat16)
    if tp_mesh is not None:
        from minillama.parallel.tensor_parallel import apply_tensor_parallel

        apply_tensor_parallel(model, tp_mesh)
    if checkpointing:  # as minillama.train.wrapping does
        for block in model.layers:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
    return model


def measured_saved_bytes(config, tokens: int, checkpointing: bool, tp_mesh=None) -> int:
    """Bytes autograd saves on this rank for one forward of a bf16 model on ``tokens`` tokens, parameters excluded."""
    model = _model(config, checkpointing, tp_mesh)
    parameters = {_local(p).untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = _local(tensor).untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, config.vocab_size, (1, tokens))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(model(ids).float().flatten(0, 1), ids.flatten())
    return sum(storages.values())


def test_activation_formula_vs_autograd():
    """The per-block count vs what autograd really saves, measured as the difference between 3 and 2 blocks.

    Checkpointed: exactly the block input (2 d bytes per token). Not checkpointed: the formula plus what the eager
    fp32 RMSNorm adds (x.float() and the fp32 normalized values, 2 x 8 d bytes, and its fp32 1/rms, 2 x 4 bytes),
    which the planner leaves out because fused and compiled norms do not store it.
    """
    tokens = 32
    for name in ("nano", "tiny"):
        config = get_preset(name)
        deeper = get_preset(name, n_layers=config.n_layers + 1)
        for checkpointing in (False, True):
            added = (measured_saved_bytes(deeper, tokens, checkpointing)
                     - measured_saved_bytes(config, tokens, checkpointing))
            if checkpointing:
                assert added == tokens * 2 * config.dim
            else:
                assert added == tokens * (block_activation_bytes(config) + 16 * config.dim + 8)


class CollectiveBytes(TorchDispatchMode):
    """Adds up the full size, in bytes, of each collective that DTensor issues as a functional collective (an
    all-gather's input is this rank's shard, a reduce-scatter's the whole tensor); waits and autograd wrappers are
    not collectives."""

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size
        self.full_bytes = 0
        self.kinds: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = func.__name__.split(".")[0]
        if func.namespace == "_c10d_functional" and kind not in ("wait_tensor", "_wrap_tensor_autograd"):
            self.kinds.add(kind)
            size = args[0].numel() * args[0].element_size()
            self.full_bytes += size * self.group_size if kind == "all_gather_into_tensor" else size
        return func(*args, **(kwargs or {}))


def _two_rank_measurements(rank: int, world_size: int, port: int, out: str) -> None:
    """On each of 2 gloo processes: saved bytes with and without the blocks split over both, and the collectives of
    one forward + backward (tensor parallelism); the collectives of one training step under FSDP and DDP
    (:func:`_data_parallel_collectives`). Rank 0 writes them to ``out``."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (world_size,), mesh_dim_names=("tp",))
    tokens, results = 32, {}
    for name in ("nano", "tiny"):
        config = get_preset(name, tie_embeddings=False)
        deeper = get_preset(name, tie_embeddings=False, n_layers=config.n_layers + 1)
        for checkpointing in (False, True):
            key = f"{name}_{'ac' if checkpointing else 'full'}"
            split = measured_saved_bytes(config, tokens, checkpointing, mesh)
            results[key] = {
                "saved": measured_saved_bytes(config, tokens, checkpointing),
                "saved_tp": split,
                "block_tp": measured_saved_bytes(deeper, tokens, checkpointing, mesh) - split,
            }
            model = _model(config, checkpointing, mesh)
            ids = torch.randint(0, config.vocab_size, (1, tokens))
            with CollectiveBytes(world_size) as collectives:
                F.cross_entropy(model(ids).float().flatten(0, 1), ids.flatten()).backward()
            results[key].update(comm_full_bytes=collectives.full_bytes, comm_kinds=sorted(collectives.kinds))
    results["data_parallel"] = _data_parallel_collectives()
    if rank == 0:
        with open(out, "w") as file:
            json.dump(results, file)
    dist.destroy_process_group()


# nano with a vocabulary large enough that the head unit (1,024 x 64 + 64) outweighs a block (49,280); untied: the
# embedding table, 2 blocks and the final norm with the head are 4 units; tied: 2 blocks and the root (the shared table
# and the final norm)
DATA_PARALLEL_MODEL = dict(tie_embeddings=False, vocab_size=1024)
TIED_MODEL = dict(tie_embeddings=True, vocab_size=1024)


def _data_parallel_collectives() -> dict:
    """One ``train_step`` of 2 micro-batches under bf16 autocast, as the trainer runs it on GPUs: FSDP through
    ``parallelize`` with the trainer's policy (bf16 gathers, fp32 reduction), with and without checkpointing and with
    tied embeddings, and DDP.

    FSDP2 calls ``torch.distributed.all_gather_single`` and ``reduce_scatter_single``: each call is logged as (kind,
    elements of the full tensor, dtype), in order, a ``"forward"`` entry marking each micro-batch's forward and a
    ``"backward"`` entry the arrival of the logits' gradient. DDP's all-reduces are logged by a communication hook, one
    entry per bucket.
    """
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from minillama.model import Llama
    from minillama.parallel.parallelize import ParallelConfig, parallelize
    from minillama.train.step import train_step

    torch.manual_seed(0)
    ids = torch.randint(0, 1024, (2, 1, 33))
    micro_batches = [(window[:, :-1], window[:, 1:]) for window in ids]
    log: list = []
    all_gather, reduce_scatter = dist.all_gather_single, dist.reduce_scatter_single

    def logged_all_gather(output_tensor, input_tensor, *args, **kwargs):
        log.append(("all_gather", output_tensor.numel(), str(output_tensor.dtype)))
        return all_gather(output_tensor, input_tensor, *args, **kwargs)

    def logged_reduce_scatter(output, input, *args, **kwargs):
        log.append(("reduce_scatter", input.numel(), str(input.dtype)))
        return reduce_scatter(output, input, *args, **kwargs)

    def mark_forward(module, args):
        log.append(("forward",))

    def mark_backward(module, args, logits):
        logits.register_hook(lambda grad: log.append(("backward",)))

    def logged_all_reduce(state, bucket):
        log.append(("all_reduce", bucket.buffer().numel(), str(bucket.buffer().dtype)))
        return allreduce_hook(state, bucket)

    fsdp = ParallelConfig(data_parallel="fsdp", param_dtype=torch.bfloat16)
    results = {}
    dist.all_gather_single, dist.reduce_scatter_single = logged_all_gather, logged_reduce_scatter
    try:
        for name, model_fields, parallel in (
                ("fsdp", DATA_PARALLEL_MODEL, fsdp),
                ("fsdp_ac", DATA_PARALLEL_MODEL, dataclasses.replace(fsdp, activation_checkpointing=True)),
                ("fsdp_tied", TIED_MODEL, fsdp),
                ("ddp", DATA_PARALLEL_MODEL, ParallelConfig(data_parallel="ddp"))):
            torch.manual_seed(0)
            model = parallelize(Llama(get_preset("nano", **model_fields)), parallel)
            model.register_forward_pre_hook(mark_forward, prepend=True)  # before FSDP's first all-gather
            model.register_forward_hook(mark_backward)
            if name == "ddp":
                model.register_comm_hook(None, logged_all_reduce)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            log.clear()
            train_step(model, optimizer, micro_batches, lr=1e-3, grad_clip=1.0, amp_dtype=torch.bfloat16)
            results[name] = list(log)
    finally:
        dist.all_gather_single, dist.reduce_scatter_single = all_gather, reduce_scatter
    return results


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    """:func:`_two_rank_measurements`, spawned once for the tests below."""
    out = tmp_path_factory.mktemp("two_ranks") / "measured.json"
    spawn(_two_rank_measurements, str(out), world_size=2)
    return json.loads(out.read_text())


def test_tensor_parallel_activations_and_communication_vs_dtensor(two_ranks):
    """The planner's tensor-parallel counts vs minillama's DTensor implementation on 2 CPU processes (gloo), bf16.

    Per block, what autograd saves: the formula plus eager RMSNorm's fp32 copies, now split over positions too
    (``(16 d + 8) / tp``); checkpointed, the block's input split over positions. Whole model: going from 1 to 2
    ranks saves what the planner says (blocks and head) plus half the eager copies (the final norm's ``8 d + 4``
    included). The collectives of one forward + backward: all-gathers and reduce-scatters only, whose full sizes
    add up to the planner's bytes divided by ``(tp - 1) / tp``.
    """
    measured = two_ranks
    tokens, tp = 32, 2
    for name in ("nano", "tiny"):
        config = get_preset(name, tie_embeddings=False)
        d, layers = config.dim, config.n_layers
        for checkpointing in (False, True):
            result = measured[f"{name}_{'ac' if checkpointing else 'full'}"]
            if checkpointing:
                assert result["block_tp"] == tokens * 2 * d // tp
            else:
                assert result["block_tp"] == tokens * (block_activation_bytes(config, tp) + (16 * d + 8) // tp)
                planned = (activation_bytes(config, tokens, False) - activation_bytes(config, tokens, False, tp))
                eager = tokens * (layers * (16 * d + 8) + 8 * d + 4) // tp
                assert result["saved"] - result["saved_tp"] == planned + eager
            assert result["comm_kinds"] == ["all_gather_into_tensor", "reduce_scatter_tensor"]
            assert result["comm_full_bytes"] * (tp - 1) // tp == tensor_parallel_comm_bytes(
                config, tokens, checkpointing, tp)


def _micro_batches(log: list) -> list[list[tuple]]:
    """A collective log split at its ``"forward"`` marks: one list per micro-batch, with its ``("backward",)`` mark."""
    split: list[list[tuple]] = []
    for entry in log:
        if entry == ["forward"]:
            split.append([])
        elif entry == ["backward"]:
            split[-1].append(("backward",))
        else:
            split[-1].append(tuple(entry))
    return split


def _bytes_sent(entries: list[tuple], world_size: int) -> int:
    """Bytes one rank sends for these collectives on a ring: ``(G - 1) / G`` of each all-gather's and reduce-scatter's
    full tensor, twice that for an all-reduce."""
    size = {"torch.bfloat16": 2, "torch.float32": 4}
    collectives = [entry for entry in entries if len(entry) == 3]  # not the "backward" mark
    full = sum(numel * size[dtype] * (2 if kind == "all_reduce" else 1) for kind, numel, dtype in collectives)
    return full * (world_size - 1) // world_size


def test_data_parallel_communication_vs_fsdp_and_ddp(two_ranks):
    """The planner's FSDP units and bytes, and DDP's, vs what minillama's ``train_step`` sends on 2 CPU processes
    (gloo), 2 micro-batches under bf16 autocast.

    FSDP, every micro-batch, in order: in the forward, the embedding table, each block and the final norm with the
    head gathered in bf16; in the backward, the head's gradients reduce-scattered in fp32 at once (its weights and the
    last block's kept from the forward, not gathered again), then each block's, the block before it and finally the
    embedding table gathered again just before they are needed, the table's gradient reduce-scattered last.
    Checkpointing's recomputation gathers nothing more. Tied embeddings: the root (the shared table and the final
    norm) gathered once, first, and reduce-scattered last. DDP: the fp32 gradients of its fp32 parameters all-reduced
    once, after the last micro-batch.
    """
    config = get_preset("nano", **DATA_PARALLEL_MODEL)
    table, block, head = fsdp_units(config)
    assert (table, block, head) == (1024 * 64, 49_280, 1024 * 64 + 64) and largest_fsdp_unit(config) == head
    assert table + 2 * block + head == config.num_params()
    common = dict(gpus=2, seq_len=32, batch_tokens=2 * 2 * 32, micro_batch=1)
    fsdp_plan = plan_training(config, parallel="fsdp", **common)
    assert fsdp_plan.grad_accum_steps == 2
    measured = two_ranks["data_parallel"]
    assert measured["fsdp_ac"] == measured["fsdp"]
    micro_batches = _micro_batches(measured["fsdp"])
    assert len(micro_batches) == 2
    gathered, reduced = ("all_gather", "torch.bfloat16"), ("reduce_scatter", "torch.float32")
    for entries in micro_batches:
        assert entries == [(gathered[0], n, gathered[1]) for n in (table, block, block, head)] + [("backward",)] + [
            (kind, n, dtype) for (kind, dtype), n in ((reduced, head), (gathered, block), (reduced, block),
                                                      (gathered, table), (reduced, block), (reduced, table))]
        assert _bytes_sent(entries, 2) == fsdp_comm_bytes(config, 2)
    assert _bytes_sent([entry for entries in micro_batches for entry in entries], 2) == fsdp_plan.comm_bytes_per_step

    tied = get_preset("nano", **TIED_MODEL)
    no_table, block, root = fsdp_units(tied)
    assert (no_table, block, root) == (0, 49_280, 1024 * 64 + 64) and root + 2 * block == tied.num_params()
    for entries in _micro_batches(measured["fsdp_tied"]):
        assert entries == [(gathered[0], n, gathered[1]) for n in (root, block, block)] + [("backward",)] + [
            (kind, n, dtype) for (kind, dtype), n in ((gathered, block), (reduced, block), (reduced, block),
                                                      (reduced, root))]
        assert _bytes_sent(entries, 2) == fsdp_comm_bytes(tied, 2)

    first, last = _micro_batches(measured["ddp"])
    assert first == [("backward",)] and last[0] == ("backward",)
    last = last[1:]
    assert {dtype for _, _, dtype in last} == {"torch.float32"}
    assert sum(numel for _, numel, _ in last) == config.num_params()
    assert _bytes_sent(last, 2) == plan_training(config, parallel="ddp", **common).comm_bytes_per_step


def test_step_time_and_tokens_per_day_by_hand():
    config = get_preset("llama3.1-8b")
    plan = plan_training(config, gpus=8, gpu="h100", seq_len=8192, batch_tokens=BATCH_16M, mfu=0.4)
    flops_per_token = 6 * (N_8B - 128_256 * 4096 - 65 * 4096) + 12 * 32 * 32 * 128 * 8192
    assert plan.flops_per_token == flops_per_token
    tokens_per_s = 8 * 989e12 * 0.4 / flops_per_token  # about 54,600 tokens/s
    assert plan.tokens_per_s == pytest.approx(tokens_per_s, rel=1e-12)
    assert plan.step_time_s == pytest.approx(BATCH_16M / tokens_per_s, rel=1e-12)
    assert plan.tokens_per_day == pytest.approx(tokens_per_s * 86400, rel=1e-12)
    assert plan.grad_accum_steps == 2048 // 8 and plan.micro_batch == 1
    twice = plan_training(config, gpus=16, seq_len=8192, batch_tokens=BATCH_16M, mfu=0.4)
    assert twice.step_time_s == pytest.approx(plan.step_time_s / 2)


def test_communication_by_hand():
    config = get_preset("llama3.1-8b")
    ddp = plan_training(config, gpus=8, parallel="ddp")
    assert ddp.comm_bytes_per_step == 2 * 4 * N_8B * 7 // 8  # one all-reduce of the fp32 gradients per step
    assert ddp.comm_time_s == pytest.approx(ddp.comm_bytes_per_step / 450e9)  # NVLink inside the node
    fsdp = plan_training(config, gpus=8, parallel="fsdp")
    # per micro-batch: bf16 all-gathers of all 8.03B parameters (forward) and of all but the head's unit and the last
    # block (backward, which starts with them), an fp32 reduce-scatter of the gradients; 256 micro-batches per step
    block, head = 218_112_000, 128_256 * 4096 + 4096
    per_micro_batch = (2 * N_8B + 2 * (N_8B - head - block) + 4 * N_8B) * 7 // 8
    assert fsdp_comm_bytes(config, 8) == per_micro_batch == 54_910_786_560
    assert fsdp.comm_bytes_per_step == 256 * per_micro_batch
    # one micro-batch: about the bytes of DDP's fp32 all-reduce (two bf16 gathers = one fp32 gather), not 1.5 times
    assert per_micro_batch / ddp.comm_bytes_per_step == pytest.approx(1 - (head + block) / (4 * N_8B))


def test_network_bandwidth_by_hand():
    """Across nodes, each GPU's NIC carries 50 GB/s. One GPU of the group per node (k = 1: FSDP over the nodes of
    8-way tensor-parallel groups, or DDP over 16 nodes of one GPU each): every byte crosses the network, 50 GB/s.
    k = 8 GPUs of the group per node (data parallelism over every GPU of 2 or 8 nodes): 8 channels side by side, the
    network part shared by 8 NICs, 8 x 50 = 400 GB/s, under NVLink's 450 GB/s."""
    config = get_preset("llama3.1-8b")
    h100 = GPUS["h100"]
    assert data_parallel_gbps(h100, 8) == 450  # one node: NVLink
    assert data_parallel_gbps(h100, 16) == data_parallel_gbps(h100, 64) == min(450, 8 * 50) == 400
    assert data_parallel_gbps(h100, 16, tensor_parallel=8) == data_parallel_gbps(h100, 16384, tensor_parallel=8) == 50
    assert data_parallel_gbps(h100, 64, tensor_parallel=2) == min(450, 4 * 50) == 200  # 4 ranks of the group a node
    assert data_parallel_gbps(h100, 16, gpus_per_node=1) == 50  # one GPU per node: its NIC alone
    assert data_parallel_gbps(GPUS["a100"], 64) == min(300, 400) == 300  # NVLink 3 is the slower part
    ddp = plan_training(config, gpus=16, parallel="ddp")  # k = 8: 2 x 4 N x 15 / 16 bytes at 400 GB/s
    assert ddp.comm_bytes_per_step == 2 * 4 * N_8B * 15 // 16
    assert ddp.comm_time_s == pytest.approx(2 * 4 * N_8B * 15 / 16 / 400e9)
    one_per_node = plan_training(config, gpus=16, gpus_per_node=1, parallel="ddp")  # k = 1: at 50 GB/s, 8x longer
    assert one_per_node.comm_time_s == pytest.approx(2 * 4 * N_8B * 15 / 16 / 50e9) == 8 * ddp.comm_time_s
    tensor = plan_training(config, gpus=16, parallel="fsdp", tensor_parallel=8, batch_tokens="64K")  # k = 1
    assert tensor.comm_time_s == pytest.approx(tensor.comm_bytes_per_step / 50e9)
    assert plan_training(config, gpus=1, parallel="ddp").comm_bytes_per_step == 0


def test_8b_fits_one_node_only_with_fsdp():
    plans = plan_grid(get_preset("llama3.1-8b"), gpus=8, gpu="h100")
    fits = {(p.parallel, p.activation_checkpointing): p.fits for p in plans}
    assert fits == {("ddp", False): False, ("ddp", True): False, ("fsdp", False): True, ("fsdp", True): True}
    assert all(p.ok for p in plans if p.parallel == "fsdp")


def test_405b_llama3_setup():
    """The Llama 3 paper: 405B on 16,384 H100s, 16M-token batches of 8,192-token sequences, 15.6T tokens.

    Data parallelism alone cannot do it. On one 8-GPU node nothing fits. Fully sharded (FSDP) with activation
    checkpointing, the model state shrinks with the number of GPUs (0.4 GB each on 16,384), but FSDP's unsharded
    buffers do not: a 3.2B-parameter block's bf16 gradient, its fp32 copy and the prefetched next block are 25.6 GB,
    which with one sequence's checkpointed activations (47.9 GB) just fits in 80 GB. But 16M tokens are only 2,048
    sequences: data parallelism cannot use more than 2,048 GPUs, which is why Meta split each replica over 128 GPUs
    with tensor (8) and pipeline (16) parallelism, leaving 128-way data parallelism. On 2,048 GPUs, one sequence
    each, FSDP alone fits and keeps up, at an eighth of Meta's speed.
    """
    config = get_preset("llama3.1-405b")
    assert config.num_params() == N_405B
    on_one_node = plan_grid(config, gpus=8, seq_len=8192, batch_tokens=BATCH_16M)
    assert not any(p.fits for p in on_one_node)
    assert min(p.memory.total for p in on_one_node) > 10 * 80e9

    paper = plan_grid(config, gpus=16384, seq_len=8192, batch_tokens=BATCH_16M, train_tokens="15.6T")
    assert [p.fits for p in paper] == [False, False, False, True]
    fsdp_ac = paper[-1]
    assert fsdp_ac.memory.weights + fsdp_ac.memory.gradients + fsdp_ac.memory.optimizer == pytest.approx(
        16 * N_405B / 16384, abs=3)  # 0.4 GB of model state per GPU
    assert fsdp_ac.memory.fsdp_buffers == fsdp_buffer_bytes(config) > 25e9
    assert 70e9 < fsdp_ac.memory.total < 80e9
    assert all(any("fewer than the 16,384 GPUs" in problem for problem in p.problems) for p in paper)
    # 6 N D: the paper's 3.8e25 FLOPs; the attention term at 8,192 tokens adds 8% more
    assert 6 * N_405B * 15.6e12 == pytest.approx(3.8e25, rel=0.01)
    assert fsdp_ac.flops_per_token * 15.6e12 / (6 * N_405B * 15.6e12) == pytest.approx(1.08, abs=0.01)
    # at 40% MFU on 16,384 H100s: 15.6T tokens in about 73 days, a 16M-token step in about 6.8 s
    assert fsdp_ac.train_days == pytest.approx(15.6e12 * fsdp_ac.flops_per_token / (16384 * 989e12 * 0.4) / 86400)
    assert 70 < fsdp_ac.train_days < 76 and 6.5 < fsdp_ac.step_time_s < 7.0

    # the most GPUs pure data parallelism can use with this batch, one sequence each: the same unsharded buffers, and
    # the bf16 weights gathered twice and the fp32 gradients reduce-scattered once, 8 GPUs of the group per node at
    # 400 GB/s, take 8.1 s of a 54 s step
    widest = plan_training(config, gpus=2048, parallel="fsdp", activation_checkpointing=True, seq_len=8192,
                           batch_tokens=BATCH_16M)
    assert widest.grad_accum_steps == 1 and widest.fits and widest.ok
    assert widest.memory.fsdp_buffers == fsdp_ac.memory.fsdp_buffers
    assert widest.comm_time_s == pytest.approx(widest.comm_bytes_per_step / 400e9)
    assert widest.comm_time_s < widest.step_time_s / 6


# --- tensor parallelism ---------------------------------------------------------------------------------------------

TINY_4097 = dict(tie_embeddings=False, vocab_size=4097)  # tiny untied, with a vocabulary that 2 and 4 do not divide


@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_memory_by_hand(tp):
    """tiny (d = 256, 4 layers, H = 8, K = 4, head_dim = 32, f = 704) with V = 4,097 on 4 data-parallel ranks of tp
    GPUs; 16 sequences of 256 tokens, micro-batches of 2: 2 accumulation steps of 512 tokens."""
    config = get_preset("tiny", **TINY_4097)
    assert (config.ffn_hidden_dim, config.num_params()) == (704, 5_049_088)
    matrices = 256 * 32 * (2 * 8 + 2 * 4) + 3 * 256 * 704  # wq wo, wk wv; w1 w2 w3: 737,280 per block
    rows = {2: 2049, 4: 1025}[tp]  # ceil(4097 / tp) vocabulary rows on the rank with the most
    params = 4 * matrices // tp + (2 * 4 + 1) * 256 + 2 * rows * 256  # + replicated norms + embedding and head
    assert tensor_parallel_params(config, tp) == params == {2: 2_525_952, 4: 1_264_384}[tp]
    table, unit, head_unit = rows * 256, matrices // tp + 2 * 256, rows * 256 + 256  # a table's slice; a block; + norm
    assert fsdp_units(config, tp) == (table, unit, head_unit) and largest_fsdp_unit(config, tp) == head_unit

    plan = plan_training(config, gpus=4 * tp, parallel="fsdp", seq_len=256, batch_tokens=16 * 256, micro_batch=2,
                         tensor_parallel=tp)
    assert (plan.data_parallel, plan.micro_batch, plan.grad_accum_steps) == (4, 2, 2)
    assert plan.memory.weights == -(-2 * params // 4) and plan.memory.optimizer == -(-12 * params // 4)
    assert plan.memory.fsdp_buffers == (2 + 4) * head_unit + 2 * unit  # the head's reduce-scatter beside the last block

    # activations per token: the block's gathered matmul inputs whole (4 d), the rest / tp; the head's log-probs whole
    block = 4 * 256 + (8 * 256 + 4 * 128 + 8 * 704 + 4 * 8) // tp
    assert block_activation_bytes(config, tp) == block == {2: 5136, 4: 3080}[tp]
    head = 2 * 256 // tp + 2 * 256 + 8 * 4097
    assert head_activation_bytes(config, tp) == head
    assert plan.memory.activations == 512 * (4 * block + head)
    checkpointed = plan_training(config, gpus=4 * tp, parallel="fsdp", activation_checkpointing=True, seq_len=256,
                                 batch_tokens=16 * 256, micro_batch=2, tensor_parallel=tp)
    assert checkpointed.memory.activations == 512 * (4 * 2 * 256 // tp + block + head)

    # communication per micro-batch: S = 512 x 256 bf16 = 262,144 bytes; per block 4 S forward + 4 S backward
    # (+ 3 S recomputed), embedding 2 S, head input 2 S, logits 512 x 4,097 bf16; (tp - 1) / tp of each per GPU
    activation, logits = 512 * 256 * 2, 512 * 4097 * 2
    assert plan.tensor_parallel_comm_bytes_per_step == 2 * ((4 * 8 + 4) * activation + logits) * (tp - 1) // tp
    assert checkpointed.tensor_parallel_comm_bytes_per_step == 2 * ((4 * 11 + 4) * activation + logits) * (tp - 1) // tp
    assert plan.tensor_parallel_comm_time_s == pytest.approx(plan.tensor_parallel_comm_bytes_per_step / 450e9)
    # FSDP per micro-batch over 4 data-parallel ranks: the slice's bf16 weights gathered in the forward and, but for
    # the head's unit and the last block, in the backward, its fp32 gradients reduce-scattered
    assert plan.comm_bytes_per_step == 2 * ((2 * params + 2 * (params - head_unit - unit) + 4 * params) * 3 // 4)
    link = 450e9 if 4 * tp <= 8 else 100e9  # 16 GPUs: the data-parallel ring spans two nodes, 8 / 4 = 2 GPUs on each
    assert plan.comm_time_s == pytest.approx(plan.comm_bytes_per_step / link)
    assert plan.fits and not plan.notes
    # a 5M-parameter model computes a step in microseconds: its activations' traffic cannot hide behind that
    assert any(problem.startswith("tensor-parallel communication") for problem in plan.problems)


def test_tensor_parallel_of_one_is_data_parallelism():
    """tp = 1 changes nothing: the same numbers as the data-parallel planner (pinned by the tests above)."""
    config = get_preset("llama3.1-8b")
    for parallel in ("ddp", "fsdp"):
        for ac in (False, True):
            plain = plan_training(config, gpus=16, parallel=parallel, activation_checkpointing=ac)
            assert plan_training(config, gpus=16, parallel=parallel, activation_checkpointing=ac,
                                 tensor_parallel=1) == plain
            assert plain.tensor_parallel == 1 and plain.data_parallel == 16
            assert plain.tensor_parallel_comm_bytes_per_step == 0 and plain.tensor_parallel_comm_time_s == 0
    assert tensor_parallel_params(config, 1) == N_8B and largest_fsdp_unit(config, 1) == 128_256 * 4096 + 4096
    assert block_activation_bytes(config, 1) == 168_064 and head_activation_bytes(config, 1) == 4 * 4096 + 8 * 128_256
    assert tensor_parallel_comm_bytes(config, 8192, True, 1) == 0
    table = format_plans(plan_grid(config, gpus=16))
    assert "TP" not in table and "mesh" not in table and "per GPU 1 x 128" in table


def test_tensor_parallel_errors_are_messages():
    tiny = get_preset("tiny", tie_embeddings=False)  # 8 heads, 4 key/value heads
    with pytest.raises(ValueError, match=r"splits n_heads \(8\) 3 ways"):
        plan_training(tiny, gpus=6, seq_len=192, batch_tokens=6 * 192, tensor_parallel=3)
    with pytest.raises(ValueError, match=r"splits n_kv_heads \(4\) 8 ways"):
        plan_training(tiny, gpus=8, seq_len=256, batch_tokens=8 * 256, tensor_parallel=8)
    with pytest.raises(ValueError, match="splits seq_len"):
        plan_training(get_preset("llama3.1-8b"), gpus=16, seq_len=8190, batch_tokens=8190 * 16, tensor_parallel=4)
    with pytest.raises(ValueError, match="10 GPUs cannot form tensor-parallel groups of 4"):
        plan_training(get_preset("llama3.1-8b"), gpus=10, tensor_parallel=4)
    with pytest.raises(ValueError, match="composes with FSDP only"):
        plan_training(get_preset("llama3.1-8b"), gpus=16, parallel="ddp", tensor_parallel=8)
    with pytest.raises(ValueError, match="tied embeddings"):
        plan_training(get_preset("llama3.2-1b"), gpus=8, tensor_parallel=2)
    with pytest.raises(ValueError, match="tensor_parallel must be a positive integer"):
        plan_training(get_preset("llama3.1-8b"), gpus=8, tensor_parallel=0)


def test_405b_with_tensor_parallelism_on_16384_gpus():
    """Llama 3's 16,384 H100s = 2,048 data-parallel ranks x 8-way tensor parallelism: every rank gets one of the
    batch's 2,048 sequences. With checkpointing, 17.6 GB per GPU; without, the blocks' activations alone are
    126 x 8,192 x 135,744 bytes = 140 GB. Without tensor parallelism the batch cannot feed the GPUs. But each GPU's
    FSDP traffic, over the network, outlasts a step at 40% MFU: the plan fits and is communication-bound."""
    config = get_preset("llama3.1-405b")
    plans = plan_grid(config, gpus=16384, seq_len=8192, batch_tokens=BATCH_16M, tensor_parallel=8)
    assert [(p.parallel, p.activation_checkpointing) for p in plans] == [("fsdp", False), ("fsdp", True)]
    full, checkpointed = plans
    assert checkpointed.data_parallel == 2048 == BATCH_16M // 8192
    assert checkpointed.micro_batch == 1 and checkpointed.grad_accum_steps == 1
    assert checkpointed.fits and round(checkpointed.memory.total / 1e9, 1) == 17.6
    # FSDP over 2,048 ranks, one GPU per node each: the slice's bf16 weights gathered twice (the head's unit and the
    # last block once) and its fp32 gradients reduce-scattered, 404 GB per GPU at 50 GB/s, longer than the 6.8 s step
    slice_params, units = tensor_parallel_params(config, 8), fsdp_units(config, 8)
    assert checkpointed.comm_bytes_per_step == (
        2 * (2 * slice_params - units.head - units.block) + 4 * slice_params) * 2047 // 2048
    assert checkpointed.comm_time_s == pytest.approx(checkpointed.comm_bytes_per_step / 50e9)
    assert checkpointed.step_time_s < checkpointed.comm_time_s < 1.25 * checkpointed.step_time_s
    assert [problem.split(" (")[0] for problem in checkpointed.problems] == ["communication"]
    d, f, V = 16384, 53248, 128_256
    block = 4 * d + (8 * d + 4 * 8 * 128 + 8 * f + 4 * 128) // 8
    assert checkpointed.memory.activations == 8192 * (126 * 2 * d // 8 + block + 2 * d // 8 + 2 * d + 8 * V)
    assert not full.fits and 126 * 8192 * block > 140e9

    without = plan_training(config, gpus=16384, parallel="fsdp", activation_checkpointing=True, seq_len=8192,
                            batch_tokens=BATCH_16M)
    assert without.data_parallel == 16384 and not without.ok
    assert any("fewer than the 16,384 GPUs" in problem for problem in without.problems)
    # the same without tensor parallelism on 2,048 GPUs needs 77 GB, over 4x the memory, and 8x the time per step
    widest = plan_training(config, gpus=2048, parallel="fsdp", activation_checkpointing=True, seq_len=8192,
                           batch_tokens=BATCH_16M)
    assert widest.memory.total > 4 * checkpointed.memory.total
    assert widest.step_time_s == pytest.approx(8 * checkpointed.step_time_s)


def test_70b_on_64_gpus_tensor_parallel_vs_fsdp_alone():
    """8 nodes of 8 H100s, 4M-token batches. FSDP alone, one sequence per micro-batch, fits, and its rings have 8
    GPUs on each node, whose 8 NICs share the traffic: 4.4 TB per GPU at 400 GB/s, 11 s of an 80 s step.
    8-way tensor parallelism inside each node leaves 8 data-parallel ranks: the memory it frees buys micro-batches
    of 4 sequences, and FSDP then gathers a slice of an eighth of the model 16 times a step instead of the whole model
    8 times, 4.5 times fewer bytes, but each ring has one GPU per node, one NIC at 50 GB/s: longer than FSDP alone,
    with 15 s of tensor-parallel collectives on top. At this size tensor parallelism does not pay."""
    config = get_preset("llama3.1-70b")
    common = dict(gpus=64, parallel="fsdp", activation_checkpointing=True, seq_len=8192, batch_tokens="4M")
    fsdp = plan_training(config, **common)
    tensor = plan_training(config, micro_batch=4, tensor_parallel=8, **common)
    assert fsdp.fits and fsdp.ok
    assert fsdp.comm_time_s == pytest.approx(fsdp.comm_bytes_per_step / 400e9)
    assert fsdp.comm_time_s < fsdp.step_time_s / 7
    assert tensor.fits and tensor.ok
    assert (tensor.data_parallel, tensor.micro_batch, tensor.grad_accum_steps) == (8, 4, 16)
    assert tensor.step_time_s == fsdp.step_time_s  # no extra model FLOPs
    slice_params, units = tensor_parallel_params(config, 8), fsdp_units(config, 8)
    assert tensor.comm_bytes_per_step == 16 * (
        (2 * (2 * slice_params - units.head - units.block) + 4 * slice_params) * 7 // 8)
    assert tensor.comm_time_s == pytest.approx(tensor.comm_bytes_per_step / 50e9)
    assert tensor.comm_bytes_per_step < fsdp.comm_bytes_per_step / 4 and tensor.comm_time_s > fsdp.comm_time_s
    assert tensor.memory.total > fsdp.memory.total
    assert tensor.tensor_parallel_comm_time_s == pytest.approx(tensor.tensor_parallel_comm_bytes_per_step / 450e9)
    # the same slice on one micro-batch at a time: 64 accumulation steps, the FSDP traffic back near FSDP alone's
    one = plan_training(config, tensor_parallel=8, **common)
    assert one.grad_accum_steps == 64 and one.comm_time_s > 0.8 * fsdp.comm_time_s


def test_tensor_parallel_across_nodes_is_a_note_and_may_be_a_problem():
    config = get_preset("llama3.1-8b")
    inside = plan_training(config, gpus=16, tensor_parallel=8, activation_checkpointing=True)
    assert not inside.notes and inside.ok
    across = plan_training(config, gpus=16, tensor_parallel=8, activation_checkpointing=True, gpus_per_node=4)
    assert any("cross the network at 50 GB/s" in note for note in across.notes)
    assert across.tensor_parallel_comm_time_s == pytest.approx(across.tensor_parallel_comm_bytes_per_step / 50e9)
    # 8B is small for 8-way tensor parallelism: over the network its collectives outlast the step's spare time
    assert (across.step_time_s * across.hardware_utilization + across.tensor_parallel_comm_time_s
            > across.step_time_s)
    assert any(problem.startswith("tensor-parallel communication") for problem in across.problems)
    assert not any(problem.startswith("tensor-parallel communication") for problem in inside.problems)
    assert "note (FSDP x TP8 + AC): tensor-parallel groups of 8 GPUs" in format_plans([across])


def test_gpu_table():
    assert GPUS["h100"].peak_tflops == 989 and GPUS["h100"].memory_gb == 80
    assert GPUS["h100"].ridge_point == pytest.approx(295, abs=1)  # 989 TFLOP/s / 3.35 TB/s
    assert GPUS["h100"].attainable_flops(1.0) == pytest.approx(3.35e12)  # memory-bound: bandwidth x intensity
    assert GPUS["h100"].attainable_flops(296.0) == 989e12  # past the ridge: the peak
    assert (GPUS["h200"].memory_gb, GPUS["a100"].peak_tflops, GPUS["a100-40"].memory_gb) == (141, 312, 40)
    assert (GPUS["l4"].peak_tflops, GPUS["t4"].compute_dtype, GPUS["mi300x"].memory_gb) == (121, "fp16", 192)
    names = {"NVIDIA H100 80GB HBM3": "h100", "NVIDIA H100 PCIe": "h100-pcie", "NVIDIA H200": "h200",
             "NVIDIA A100-SXM4-80GB": "a100", "NVIDIA A100-SXM4-40GB": "a100-40", "NVIDIA L4": "l4",
             "Tesla T4": "t4", "AMD Instinct MI300X": "mi300x", "NVIDIA GeForce RTX 3060": None}
    for device_name, key in names.items():
        assert gpu_for_device_name(device_name) == key, device_name


def test_the_trainers_mfu_reads_the_plan_table():
    from minillama.train import metrics

    assert metrics.peak_flops_for_name is gpus.peak_flops_for_name  # one table: minillama.gpus
    assert gpus.peak_flops_for_name("NVIDIA GeForce RTX 3060") is None
    for device_name in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB",
                        "NVIDIA L4", "Tesla T4", "AMD Instinct MI300X"):
        expected = GPUS[gpu_for_device_name(device_name)].peak_flops
        assert gpus.peak_flops_for_name(device_name) == expected, device_name


def test_parse_count():
    assert parse_count("16M", binary=True) == 2**24 == BATCH_16M
    assert parse_count("4k", binary=True) == 4096
    assert parse_count("15.6T") == 15_600_000_000_000
    assert parse_count("2B") == parse_count("2G") == 2_000_000_000
    assert parse_count(1234) == parse_count("1234") == 1234
    with pytest.raises(ValueError, match="cannot read"):
        parse_count("16 megatokens")


def test_errors_are_messages():
    config = get_preset("llama3.1-8b")
    with pytest.raises(ValueError, match="whole number of 8,192-token sequences"):
        plan_training(config, gpus=8, batch_tokens=1000)
    with pytest.raises(ValueError, match="unknown GPU"):
        plan_training(config, gpus=8, gpu="h1000")
    with pytest.raises(ValueError, match="parallel must be"):
        plan_training(config, gpus=8, parallel="zero")
    with pytest.raises(ValueError, match="gpus must be a positive integer"):
        plan_training(config, gpus=0)
    too_long = plan_training(get_preset("nano"), gpus=1, seq_len=256, batch_tokens=1024)
    assert any("max_seq_len" in problem for problem in too_long.problems)


def test_cli_json(capsys):
    argv = ["plan", "--preset", "llama3.1-70b", "--gpus", "64", "--gpu", "h100", "--seq", "8192",
            "--batch-tokens", "16M", "--json"]
    assert main(argv) == 0
    plans = json.loads(capsys.readouterr().out)
    assert [(p["parallel"], p["activation_checkpointing"]) for p in plans] == [
        ("ddp", False), ("ddp", True), ("fsdp", False), ("fsdp", True)]
    assert plans[0]["n_params"] == 70_553_706_496 and plans[0]["batch_tokens"] == BATCH_16M
    assert [p["fits"] for p in plans] == [False, False, False, True]
    assert plans[3]["memory"]["weights"] == -(-2 * 70_553_706_496 // 64)


def test_cli_tensor_parallel(capsys):
    argv = ["plan", "--preset", "llama3.1-405b", "--gpus", "16384", "--tp", "8", "--seq", "8192",
            "--batch-tokens", "16M", "--ac", "full"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "mesh: 2,048 data-parallel ranks (FSDP) x 8 tensor-parallel GPUs" in out
    assert "FSDP x TP8 + AC" in out and "DDP" not in out.replace("FSDP", "")
    assert "TP communication time per step (s)" in out and "DP communication per step (GB/GPU)" in out
    assert "per data-parallel rank 1 x 1" in out and "fits in 80 GB?" in out and "NO" not in out
    assert main([*argv[:-2], "--json"]) == 0  # the grid with tp: FSDP without and with checkpointing
    plans = json.loads(capsys.readouterr().out)
    assert [(p["parallel"], p["tensor_parallel"], p["data_parallel"], p["activation_checkpointing"])
            for p in plans] == [("fsdp", 8, 2048, False), ("fsdp", 8, 2048, True)]
    assert plans[1]["fits"] and plans[1]["notes"] == [] and plans[1]["tensor_parallel_comm_bytes_per_step"] > 0
    assert not plans[1]["ok"] and plans[1]["problems"][0].startswith("communication (8.1 s per step at 50 GB/s)")
    assert plan_to_dict(plan_training(get_preset("llama3.1-8b"), gpus=8))["tensor_parallel"] == 1
    assert main(["plan", "--preset", "llama3.1-405b", "--gpus", "16384", "--tensor-parallel", "8", "--parallel",
                 "ddp"]) == 2
    assert "composes with FSDP only" in capsys.readouterr().err


def test_cli_table(capsys):
    assert main(["plan", "--preset", "llama3.1-405b", "--gpus", "16384", "--parallel", "fsdp", "--ac", "full",
                 "--train-tokens", "15.6T"]) == 0
    out = capsys.readouterr().out
    assert "FSDP + AC" in out and "DDP" not in out.replace("FSDP", "")
    assert "fits in 80 GB?" in out and "yes" in out and "FSDP + AC: the batch has 2,048 sequences, fewer than" in out
    assert "FSDP + AC: communication (8.1 s per step at 400 GB/s)" in out
    assert "T tokens take" in out
    assert main(["plan", "--preset", "llama3.1-8b", "--batch-tokens", "1000"]) == 2
    assert "whole number" in capsys.readouterr().err
