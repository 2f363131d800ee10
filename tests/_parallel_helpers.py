"""Shared by tests/test_parallel_*.py: run a function on 2 CPU processes (gloo) and the scenarios they run.

Starting a process costs seconds (importing torch), so one spawn of two processes runs every two-rank scenario in
turn, sharing one process group; each scenario's rank 0 writes its run folder (``metrics.jsonl``, checkpoints) and
every rank writes what the tests need to check into ``results/rank_R.json``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

import torch
import torch.multiprocessing as mp

from minillama.train.config import TrainConfig

WORLD_SIZE = 2
REAL_PRESETS = ("llama3.2-1b", "llama3.2-3b", "llama3-8b", "llama3-70b", "llama3.1-8b", "llama3.1-70b",
                "llama3.1-405b")


def run_config(run_dir: Path, corpus: Path, **overrides) -> TrainConfig:
    """8 steps of ``nano`` on a global batch of 4 windows of 32 tokens, float32 on CPU, a loss record per step."""
    values = dict(model="nano", corpus=str(corpus), seq_len=32, batch_size=4, max_steps=8, warmup_steps=2, lr=3e-3,
                  eval_interval=4, eval_batches=0, log_interval=1, checkpoint_interval=100, num_samples=0,
                  sample_tokens=8, progress=False, device="cpu", threads=1, run_dir=str(run_dir))
    values.update(overrides)
    return TrainConfig(**values)


def spawn(function, *args, world_size: int = WORLD_SIZE, timeout_s: float = 240.0) -> None:
    """Run ``function(rank, world_size, port, *args)`` on ``world_size`` fresh processes; raise if any fails.

    A collective that one rank never joins blocks the others forever: past ``timeout_s`` the processes are
    terminated and the test fails instead of hanging.
    """
    from minillama.parallel.distributed import free_port

    context = mp.start_processes(_entry, args=(function, world_size, free_port(), args), nprocs=world_size,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            raise TimeoutError(f"{function.__name__} on {world_size} processes did not finish in {timeout_s:.0f} s "
                               f"(ranks waiting in a collective that another rank never joined?)")


def _entry(rank: int, function, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        function(rank, world_size, port, *args)
    except BaseException:
        traceback.print_exc()
        raise


# --- the two-rank scenarios ------------------------------------------------------------------------------------------


def _fit(config: TrainConfig, ctx):
    from minillama.parallel.training import DistributedTrainer

    trainer = DistributedTrainer(config, ctx, log=lambda text: None)
    return trainer, trainer.fit


def _count_ddp_allreduces(trainer) -> list[int]:
    """Register a DDP communication hook that counts gradient all-reduces (one per bucket) and does them."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    calls = [0]

    def counting_hook(state, bucket):
        calls[0] += 1
        return allreduce_hook(state, bucket)

    trainer.train_model.register_comm_hook(None, counting_hook)
    return calls


class _CountReduceScatters:
    """Count ``torch.distributed.reduce_scatter_single`` calls (FSDP2's gradient reduce-scatter) while active."""

    def __enter__(self):
        import torch.distributed as dist

        self.dist, self.original, self.calls = dist, dist.reduce_scatter_single, 0

        def counting(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        dist.reduce_scatter_single = counting
        return self

    def __exit__(self, *exc):
        self.dist.reduce_scatter_single = self.original


def two_rank_scenarios(rank: int, world_size: int, port: int, workdir: str, corpus: str) -> None:
    """Every two-rank scenario of tests/test_parallel_training.py, one after the other in one process group."""
    from minillama.parallel.distributed import init_distributed

    workdir, corpus = Path(workdir), Path(corpus)
    ctx = init_distributed("cpu")
    results: dict = {}

    # DDP and FSDP with the same global batch as the single-process reference (2 ranks x 2 windows).
    trainer, fit = _fit(run_config(workdir / "ddp", corpus, parallel="ddp", batch_size=2), ctx)
    calls = _count_ddp_allreduces(trainer)
    fit()
    results["ddp_allreduces_per_step"] = calls[0] / trainer.step
    # FSDP also writes a sharded checkpoint at step 4 and generates a sample at each evaluation (collectives).
    trainer, fit = _fit(run_config(workdir / "fsdp", corpus, parallel="fsdp", batch_size=2, checkpoint_interval=4,
                                   num_samples=1), ctx)
    with _CountReduceScatters() as counter:
        fit()
    results["fsdp_reduce_scatters_per_step"] = counter.calls / trainer.step
    results["fsdp_param_types"] = sorted({type(p).__name__ for p in trainer.model.parameters()})
    results["fsdp_local_numel"] = sum(p.to_local().numel() for p in trainer.model.parameters())
    results["fsdp_num_params"] = trainer.model_config.num_params()  # nano with the corpus's vocabulary

    # Gradient accumulation: 2 micro-batches of 1 window per rank, the same global batch; communication only once
    # per optimizer step. FSDP's run also checkpoints its activations.
    trainer, fit = _fit(run_config(workdir / "ddp_accum", corpus, parallel="ddp", batch_size=1, grad_accum_steps=2),
                        ctx)
    calls = _count_ddp_allreduces(trainer)
    fit()
    results["ddp_accum_allreduces_per_step"] = calls[0] / trainer.step
    trainer, fit = _fit(run_config(workdir / "fsdp_accum", corpus, parallel="fsdp", batch_size=1, grad_accum_steps=2,
                                   activation_checkpointing=True), ctx)
    with _CountReduceScatters() as counter:
        fit()
    results["fsdp_accum_reduce_scatters_per_step"] = counter.calls / trainer.step

    # 1 -> 2: continue the single process's sharded checkpoint of step 4 on two FSDP ranks.
    trainer, fit = _fit(run_config(workdir / "resumed_1to2", corpus, parallel="fsdp", batch_size=2,
                                   resume=str(workdir / "resumed_1to2")), ctx)
    results["resumed_1to2_start"] = trainer.step
    fit()

    results["meta"] = meta_presets(rank, world_size)
    (workdir / "results").mkdir(exist_ok=True)
    (workdir / "results" / f"rank_{rank}.json").write_text(json.dumps(results))


def meta_presets(rank: int, world_size: int) -> dict:
    """Every real preset on the meta device, sharded by ``parallelize`` over the ranks: this rank's parameter
    count; and ``nano`` built on meta, sharded, then materialized and initialized shard by shard."""
    import warnings

    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.parallel.parallelize import ParallelConfig, parallelize

    local = {}
    for name in REAL_PRESETS:
        with torch.device("meta"):
            model = Llama(get_preset(name))
        parallelize(model, ParallelConfig(data_parallel="fsdp", activation_checkpointing=True))
        local[name] = sum(p.to_local().numel() for p in model.parameters())
        assert all(p.device.type == "meta" for p in model.parameters())

    with torch.device("meta"):
        model = Llama(get_preset("tiny"))
    parallelize(model, ParallelConfig(data_parallel="fsdp"))
    model.to_empty(device="cpu")
    with warnings.catch_warnings():  # DTensor's random ops warn that CPU meshes are not their main target
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(0)
        model.init_weights()
    stds = {name: float(p.full_tensor().std()) for name, p in model.named_parameters()
            if name in ("tok_embeddings.weight", "layers.0.attention.wo.weight", "layers.0.feed_forward.w1.weight")}
    ones = bool(model.norm.weight.full_tensor().eq(1).all())
    return {"local_numel": local, "init_std": stds, "norm_ones": ones}


# --- CUDA (NCCL) scenarios: run only where GPUs are ------------------------------------------------------------------


def cuda_mixed_precision(rank: int, world_size: int, port: int, workdir: str) -> None:
    """FSDP's bf16-compute / fp32-reduce policy on one GPU: the dtypes of weights, activations and gradients."""
    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.parallel.distributed import destroy_distributed, init_distributed
    from minillama.parallel.parallelize import ParallelConfig, parallelize

    ctx = init_distributed("cuda")
    model = Llama(get_preset("nano")).to(ctx.device)
    parallelize(model, ParallelConfig(data_parallel="fsdp", param_dtype=torch.bfloat16))
    tokens = torch.randint(0, 256, (2, 16), device=ctx.device)
    logits = model(tokens)
    logits.float().logsumexp(-1).mean().backward()
    weight = model.layers[0].attention.wq.weight
    result = {"backend": ctx.backend, "logits": str(logits.dtype), "weight": str(weight.dtype),
              "grad": str(weight.grad.dtype), "device": str(weight.to_local().device)}
    Path(workdir, f"cuda_rank_{rank}.json").write_text(json.dumps(result))
    destroy_distributed()


def cuda_two_ranks(rank: int, world_size: int, port: int, workdir: str, corpus: str) -> None:
    """DDP and FSDP on two GPUs in float32 (compare with one GPU), and FSDP in bf16 with compile and checkpointing."""
    from minillama.parallel.distributed import destroy_distributed, init_distributed

    workdir, corpus = Path(workdir), Path(corpus)
    ctx = init_distributed("cuda")
    for name, overrides in (("ddp", {"parallel": "ddp", "dtype": "float32"}),
                            ("fsdp", {"parallel": "fsdp", "dtype": "float32"}),
                            ("fsdp_bf16", {"parallel": "fsdp", "dtype": "bfloat16", "compile": True,
                                           "activation_checkpointing": True})):
        _, fit = _fit(run_config(workdir / name, corpus, device="cuda", batch_size=2, **overrides), ctx)
        fit()
    destroy_distributed()
