"""Shared by tests/test_parallel_tensor.py: the tensor-parallel scenarios, run on 2 and on 4 CPU processes (gloo).

Each scenario writes its run folder (rank 0) and what the tests check into ``results/<name>_rank_R.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from _parallel_helpers import run_config

from minillama.train.config import TrainConfig


def _fit(config: TrainConfig, ctx):
    from minillama.parallel.training import distributed_trainer

    trainer = distributed_trainer(config, ctx, log=lambda text: None)
    trainer.fit()
    return trainer


def _placements(param) -> list[str]:
    """A DTensor's placement per mesh dimension, as ``"Shard(0)"``, ``"Replicate"``, ``"_StridedShard(0)"``."""
    return [type(p).__name__ + (f"({p.dim})" if hasattr(p, "dim") else "") for p in param.placements]


def _write(workdir: Path, name: str, rank: int, results: dict) -> None:
    (workdir / "results").mkdir(exist_ok=True)
    (workdir / "results" / f"{name}_rank_{rank}.json").write_text(json.dumps(results))


def two_rank_tensor_parallel(rank: int, world_size: int, port: int, workdir: str, corpus: str) -> None:
    """tp = 2, dp = 1: the whole global batch on both ranks; a sharded checkpoint at step 4; samples; then the
    single process's sharded checkpoint of step 4 continued with tp = 2 (1 -> 2)."""
    from minillama.parallel.distributed import init_distributed

    workdir, corpus = Path(workdir), Path(corpus)
    ctx = init_distributed("cpu")
    trainer = _fit(run_config(workdir / "tp2", corpus, parallel="fsdp", tensor_parallel=2, batch_size=4,
                              checkpoint_interval=4, num_samples=1), ctx)
    model = trainer.model
    wq, norm = model.layers[0].attention.wq.weight, model.layers[0].attention_norm.weight
    results = {
        "local_numel": sum(p.to_local().numel() for p in model.parameters()),
        "norm_numel": sum(p.numel() for name, p in model.named_parameters() if name.endswith("norm.weight")),
        "wq_placements": _placements(wq),
        "wq_local_shape": list(wq.to_local().shape),
        "norm_placements": _placements(norm),
        "mesh": list(wq.device_mesh.mesh_dim_names),
        "samples": trainer.last_samples,
    }
    resumed = _fit(run_config(workdir / "resumed_1to_tp2", corpus, parallel="fsdp", tensor_parallel=2, batch_size=4,
                              resume=str(workdir / "resumed_1to_tp2")), ctx)
    results["resumed_start"] = resumed.step - resumed.config.max_steps + 4  # 4 when it started from step 4
    _write(workdir, "tp2", rank, results)


def four_rank_2d(rank: int, world_size: int, port: int, workdir: str, corpus: str) -> None:
    """dp = 2 x tp = 2, with activation checkpointing and 2 micro-batches of 1 window per data-parallel rank: the
    same global batch of 4 windows as the single process."""
    from minillama.parallel.distributed import init_distributed

    workdir, corpus = Path(workdir), Path(corpus)
    ctx = init_distributed("cpu")
    trainer = _fit(run_config(workdir / "dp2_tp2", corpus, parallel="fsdp", tensor_parallel=2, batch_size=1,
                              grad_accum_steps=2, activation_checkpointing=True), ctx)
    wq = trainer.model.layers[0].attention.wq.weight
    _write(workdir, "dp2_tp2", rank, {
        "data_rank": trainer.data_rank, "data_world_size": trainer.data_world_size,
        "first_batch": trainer.loader.state_dict(),
        "wq_placements": _placements(wq), "wq_local_shape": list(wq.to_local().shape),
        "threads": torch.get_num_threads(),
    })
