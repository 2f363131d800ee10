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
    from minillama.parallel.training import DistributedTrainer

    trainer = DistributedTrainer(config, ctx, log=lambda text: None)
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
    results["meta_init"] = meta_init_2d()
    results["compiled_tp"] = compiled_tensor_parallel()
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


def meta_init_2d(device: str = "cpu") -> dict:
    """``tiny``'s shape with 2 layers built on the meta device, split over 2 tensor-parallel ranks, materialized and
    initialized slice by slice (the GPU path): the initialization's statistics over the whole matrices.

    Only on CUDA do DTensor's random ops give each rank its own stream of numbers (an offset-based generator): on a
    CPU mesh every rank draws the same numbers for its slice. That is why the trainer materializes the model slice by
    slice on GPUs only, and on CPUs builds it whole before splitting it."""
    import warnings

    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.parallel.parallelize import ParallelConfig, parallelize

    config = get_preset("tiny", tie_embeddings=False, n_layers=2)
    with torch.device("meta"):
        model = Llama(config)
    parallelize(model, ParallelConfig(data_parallel="fsdp", tensor_parallel=2))
    model.to_empty(device=device)
    with warnings.catch_warnings():  # DTensor's random ops warn that CPU meshes are not their main target
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(0)
        model.init_weights()
    names = ("tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.0.attention.wo.weight",
             "layers.1.feed_forward.w2.weight", "output.weight")
    full = {name: p.full_tensor() for name, p in model.named_parameters() if name in names}
    wq = full["layers.0.attention.wq.weight"]
    half = wq.shape[0] // 2
    return {"std": {name: float(t.std()) for name, t in full.items()},
            "slices_differ": not torch.allclose(wq[:half], wq[half:]),  # each rank drew its own numbers
            "finite": all(bool(t.isfinite().all()) for t in full.values()),
            "norm_ones": bool(model.layers[1].ffn_norm.weight.full_tensor().eq(1).all()),
            "n_layers": config.n_layers}


def cuda_tensor_parallel(rank: int, world_size: int, port: int, workdir: str, corpus: str) -> None:
    """tp = 2 on two GPUs (NCCL): float32 (compare with one GPU), then bf16 with activation checkpointing, and the
    meta-device initialization slice by slice."""
    from minillama.parallel.distributed import destroy_distributed, init_distributed

    workdir, corpus = Path(workdir), Path(corpus)
    ctx = init_distributed("cuda")
    for name, overrides in (("tp2", {"dtype": "float32"}),
                            ("tp2_bf16", {"dtype": "bfloat16", "activation_checkpointing": True})):
        _fit(run_config(workdir / name, corpus, device="cuda", parallel="fsdp", tensor_parallel=2, batch_size=4,
                        num_samples=1, **overrides), ctx)
    _write(workdir, "cuda_tp2", rank, {"meta_init": meta_init_2d("cuda")})
    destroy_distributed()


def compiled_tensor_parallel() -> str:
    """What ``torch.compile`` (``aot_eager``: Dynamo and AOTAutograd, the parts that handle DTensors) does to the
    gradients of tensor-parallel blocks: ``"equal"`` to eager's, ``"different"``, or the error it raises. minillama
    refuses compile with tensor parallelism while this is not ``"equal"``."""
    import torch.nn.functional as F
    from torch.distributed.device_mesh import init_device_mesh

    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.parallel.tensor_parallel import apply_tensor_parallel

    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("tp",))
    tokens = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(0))

    def gradients(compiled: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = Llama(get_preset("nano"))
        apply_tensor_parallel(model, mesh)
        if compiled:
            for block in model.layers:
                block.compile(backend="aot_eager")
        logits = model(tokens[:, :-1])  # (B, T, vocab)
        F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten()).backward()
        return {name: p.grad.full_tensor() for name, p in model.named_parameters()}

    eager = gradients(compiled=False)
    try:
        compiled = gradients(compiled=True)
    except Exception as error:  # noqa: BLE001 - the outcome is what is recorded
        return f"{type(error).__name__}: {error}"
    same = all(torch.allclose(eager[name], compiled[name], rtol=1e-4, atol=1e-6) for name in eager)
    return "equal" if same else "different"
