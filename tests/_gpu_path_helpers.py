"""Shared by tests/test_gpu_paths_on_cpu.py: the trainer's GPU-only switches, forced on 2 CPU processes (gloo).

On CUDA the trainer builds the model on the meta device, gathers FSDP's weights in bfloat16, compiles every block
and uses the fused AdamW kernel; on CPU it does none of these. The switches are seams that are easy to force from a
test process without touching the package:

* ``meta_init``: :class:`minillama.parallel.training.DistributedTrainer` uses ``meta_init`` only on CUDA; the
  scenarios replace the ``Trainer`` it calls by one that always gets ``meta_init=True``;
* bfloat16: ``dtype="bfloat16"`` in the config is what ``dtype="auto"`` becomes on a GPU (autocast and FSDP's
  ``param_dtype``);
* ``torch.compile``: Inductor generates and compiles C++ on a CPU, seconds per graph, so :class:`CompileCounter`
  compiles with ``aot_eager`` (Dynamo's graph capture and AOTAutograd's joint graph, the parts that meet FSDP and
  activation checkpointing; :func:`inductor_step` runs Inductor once) and counts the graphs and the calls that run
  them;
* fused AdamW: ``build_optimizer`` asks for ``fused=True`` when it is told the device is CUDA.

One spawn of two processes runs every scenario; rank 0 writes what the tests check to ``results/rank_0.json``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from _parallel_helpers import run_config


class CompileCounter:
    """A ``torch.compile`` backend that compiles with ``backend`` and counts what happens.

    ``graphs``: graphs compiled; ``graphs_while_sampling``: of those, compiled while ``sampling`` was set (the
    trainer's samples); ``calls``: forward calls that ran a compiled graph (a block that silently runs eagerly adds
    none).
    """

    def __init__(self, backend: str = "aot_eager") -> None:
        self.backend = backend
        self.graphs = self.graphs_while_sampling = self.calls = 0
        self.sampling = False

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        from torch._dynamo.backends.registry import lookup_backend

        self.graphs += 1
        self.graphs_while_sampling += self.sampling
        compiled = lookup_backend(self.backend)(graph_module, example_inputs)

        def run(*args):
            self.calls += 1
            return compiled(*args)

        return run


@contextlib.contextmanager
def compiling_with(backend) -> Iterator[None]:
    """Every ``torch.compile`` call inside (``nn.Module.compile`` included) uses ``backend``; Dynamo's caches are
    cleared first, so that graphs compiled for an earlier model are not reused (and counted) for this one."""
    original = torch.compile
    torch._dynamo.reset()
    torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original


@contextlib.contextmanager
def gpu_switches(fused_adamw: bool = False) -> Iterator[None]:
    """Make the trainer build AdamW as it does on CUDA: the fused kernel."""
    import minillama.train.trainer as trainer_module

    build_optimizer = trainer_module.build_optimizer
    if fused_adamw:
        trainer_module.build_optimizer = lambda model, config, device: build_optimizer(model, config,
                                                                                      torch.device("cuda"))
    try:
        yield
    finally:
        trainer_module.build_optimizer = build_optimizer


def _train(workdir: Path, corpus: Path, ctx, name: str, *, meta_init: bool = False, fused_adamw: bool = False,
           counter: CompileCounter | None = None, inspect: bool = False, **overrides) -> dict:
    """Run the ``DistributedTrainer`` under FSDP on the global batch of the single-process reference; what it built
    (``inspect``: and what :func:`_materialized` finds in the model before training)."""
    from minillama.parallel.training import DistributedTrainer

    config = run_config(workdir / name, corpus, parallel="fsdp", batch_size=2, **overrides)
    compiling = compiling_with(counter) if counter is not None else contextlib.nullcontext()
    with gpu_switches(fused_adamw), compiling:
        trainer = DistributedTrainer(config, ctx, log=lambda text: None, meta_init=meta_init or None)
        if counter is not None:
            trainer.samples = _flagging(trainer.samples, counter)
        record = {"optimizer_fused": bool(trainer.optimizer.defaults.get("fused")),
                  "buffers": [n for n, _ in trainer.model.named_buffers()]}
        if inspect:
            record.update(_materialized(trainer.model))
        trainer.fit()
    record["samples"] = trainer.last_samples
    record["param_dtypes"] = sorted({str(p.dtype) for p in trainer.model.parameters()})
    if counter is not None:
        record.update(graphs=counter.graphs, graphs_while_sampling=counter.graphs_while_sampling,
                      calls=counter.calls)
    return record


def _flagging(samples, counter: CompileCounter):
    """``Trainer.samples`` with ``counter.sampling`` set while it runs."""

    def flagged() -> list[str]:
        counter.sampling = True
        try:
            return samples()
        finally:
            counter.sampling = False

    return flagged


@torch.no_grad()
def _materialized(model: torch.nn.Module) -> dict:
    """What a model built on meta, sharded and initialized holds: per-parameter statistics of the full tensors,
    whether anything is still on meta or not finite, whether the shards of a rank repeat another rank's, and whether
    it computes what a plain ``Llama`` with the same (gathered) weights computes."""
    from minillama.model import Llama

    full = {name: p.full_tensor() for name, p in model.named_parameters()}
    stats = {name: {"shape": list(t.shape), "mean": float(t.mean()), "std": float(t.std())} for name, t in full.items()}
    on_meta = [name for name, p in model.named_parameters() if p.to_local().is_meta]
    finite = all(bool(t.isfinite().all()) for t in full.values())
    # DTensor's random ops keep the shards of a CUDA mesh distinct (an offset-based Philox tracker); on a CPU mesh each
    # rank draws from its own generator, seeded alike, so rank 1's first shard repeats rank 0's first rows.
    embedding = full["tok_embeddings.weight"]
    rows = embedding.shape[0] - (embedding.shape[0] + 1) // 2  # rank 1's rows (FSDP gives rank 0 the extra row)
    repeated = bool(torch.equal(embedding[-rows:], embedding[:rows]))
    plain = Llama(model.config)
    plain.load_state_dict(full)
    tokens = torch.arange(48).reshape(2, 24) % model.config.vocab_size
    logits_error = float((model(tokens) - plain(tokens)).abs().max())
    for module in model.modules():  # the head unit and the last block keep their gathered weights after a forward
        if hasattr(module, "reshard"):  # (until a backward, which starts with them): free them
            module.reshard()
    return {"stats": stats, "on_meta": on_meta, "finite": finite, "shards_repeat": repeated,
            "logits_error": logits_error}


def _direct_checks(rank: int, world_size: int) -> dict:
    """Fused vs foreach AdamW on FSDP's DTensor parameters, and ``clip_grad_norm_`` on DTensor gradients, each
    against one process training the same model on the whole batch."""
    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.parallel.parallelize import ParallelConfig, parallelize

    batch = torch.randint(0, 256, (2 * world_size, 17), generator=torch.Generator().manual_seed(1))
    mine = batch[2 * rank:2 * rank + 2]  # this rank's half of the global batch

    def run(fsdp: bool, fused: bool, clip: float) -> tuple[dict, list]:
        torch.manual_seed(0)
        model = Llama(get_preset("nano"))
        if fsdp:
            parallelize(model, ParallelConfig(data_parallel="fsdp"))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1,
                                      **({"fused": True} if fused else {"foreach": True}))
        norms = []
        for _ in range(3):
            tokens = mine if fsdp else batch
            logits = model(tokens[:, :-1])  # (B, T, vocab)
            F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            norms.append({"type": type(norm).__name__, "value": float(norm),
                          "replicated": [p.is_replicate() for p in getattr(norm, "placements", ())]})
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        weights = {name: (p.full_tensor() if fsdp else p).detach() for name, p in model.named_parameters()}
        return weights, norms

    def max_difference(a: dict, b: dict) -> float:
        return max(float((a[name] - b[name]).abs().max()) for name in a)

    fused, fused_norms = run(fsdp=True, fused=True, clip=math.inf)
    foreach, _ = run(fsdp=True, fused=False, clip=math.inf)
    single, single_norms = run(fsdp=False, fused=True, clip=math.inf)
    clipped, clipped_norms = run(fsdp=True, fused=False, clip=0.5)
    single_clipped, single_clipped_norms = run(fsdp=False, fused=False, clip=0.5)
    return {
        "fused_vs_foreach": max_difference(fused, foreach),
        "fused_vs_single": max_difference(fused, single),
        "norms": fused_norms, "single_norms": single_norms,
        "clipped_vs_single": max_difference(clipped, single_clipped),
        "clipped_norms": clipped_norms, "single_clipped_norms": single_clipped_norms,
    }


def _tied_meta_init(rank: int) -> dict:
    """A model with tied embeddings (Llama 3.2 1B/3B) built on meta, sharded, materialized: the same gradients as a
    plain model with its gathered weights (the output head reads the embedding's gathered weight)."""
    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.parallel.parallelize import ParallelConfig, parallelize

    config = get_preset("nano", tie_embeddings=True)
    with torch.device("meta"):
        model = Llama(config)
    parallelize(model, ParallelConfig(data_parallel="fsdp"))
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    plain = Llama(config)
    plain.load_state_dict({name: p.full_tensor() for name, p in model.named_parameters()})
    tokens = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(2))
    model(tokens[2 * rank:2 * rank + 2]).square().mean().backward()
    plain(tokens).square().mean().backward()
    grads = {name: p.grad.full_tensor() for name, p in model.named_parameters()}
    return {"names": sorted(grads), "grad_error": max(float((grads[name] - p.grad).abs().max() /
                                                             p.grad.abs().max()) for name, p in
                                                       plain.named_parameters())}


def gpu_path_scenarios(rank: int, world_size: int, port: int, workdir: str, corpus: str) -> None:
    """Every two-rank scenario of tests/test_gpu_paths_on_cpu.py, one after the other in one process group."""
    import warnings

    from minillama.parallel.distributed import init_distributed

    warnings.filterwarnings("ignore", message="DTensor random operators may not have complete support")
    workdir, corpus = Path(workdir), Path(corpus)
    ctx = init_distributed("cpu")
    results = {
        # float32, eager, seeded init on the CPU: the reference the others are compared with
        "fsdp": _train(workdir, corpus, ctx, "fsdp"),
        # FSDP gathering bfloat16 weights (MixedPrecisionPolicy) under bfloat16 autocast, as on CUDA
        "fsdp_bf16": _train(workdir, corpus, ctx, "fsdp_bf16", dtype="bfloat16", num_samples=1),
        # built on meta, sharded, materialized with to_empty + init_weights: float32, eager
        "fsdp_meta": _train(workdir, corpus, ctx, "fsdp_meta", meta_init=True, inspect=True),
        # every switch of configs/llama3.1-8b-8xh100.toml: meta init, bf16, compile, activation checkpointing, fused
        "gpu_recipe": _train(workdir, corpus, ctx, "gpu_recipe", meta_init=True, fused_adamw=True,
                             counter=CompileCounter(), dtype="bfloat16", compile=True,
                             activation_checkpointing=True, num_samples=1),
        # compile alone (float32): the compiled blocks run, and the trainer's samples meet them
        "fsdp_compile": _train(workdir, corpus, ctx, "fsdp_compile", counter=CompileCounter(), compile=True,
                               num_samples=1, sample_tokens=1, eval_interval=8),
        # compile with activation checkpointing (float32)
        "fsdp_compile_ac": _train(workdir, corpus, ctx, "fsdp_compile_ac", counter=CompileCounter(), compile=True,
                                  activation_checkpointing=True),
        "direct": _direct_checks(rank, world_size),
        "tied_meta": _tied_meta_init(rank),
    }
    torch._dynamo.reset()
    if rank == 0:
        (workdir / "results").mkdir(exist_ok=True)
        (workdir / "results" / "rank_0.json").write_text(json.dumps(results))


def inductor_step(rank: int, world_size: int, port: int, workdir: str) -> None:
    """One FSDP step of ``nano`` with bf16 weights and each block compiled by Inductor (the GPU's backend, here
    generating C++): the compiled blocks run, and the gradients are those of a float32 eager model."""
    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.parallel.distributed import init_distributed
    from minillama.parallel.parallelize import ParallelConfig, parallelize

    init_distributed("cpu")
    counter = CompileCounter("inductor")
    torch.manual_seed(0)
    reference = Llama(get_preset("nano"))
    torch.manual_seed(0)
    model = Llama(get_preset("nano"))
    with compiling_with(counter):
        parallelize(model, ParallelConfig(data_parallel="fsdp", compile=True, param_dtype=torch.bfloat16))
    tokens = torch.randint(0, 256, (2 * world_size, 17), generator=torch.Generator().manual_seed(1))
    mine = tokens[2 * rank:2 * rank + 2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(mine[:, :-1])  # (B, T, vocab)
    F.cross_entropy(logits.float().flatten(0, 1), mine[:, 1:].flatten()).backward()
    F.cross_entropy(reference(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
    error = max(float((p.grad.full_tensor() - r.grad).abs().max() / r.grad.abs().max())
                for p, r in zip(model.parameters(), reference.parameters(), strict=True))
    torch._dynamo.reset()
    if rank == 0:
        Path(workdir, "inductor.json").write_text(json.dumps({"graphs": counter.graphs, "calls": counter.calls,
                                                              "grad_error": error,
                                                              "logits": str(logits.dtype)}))
