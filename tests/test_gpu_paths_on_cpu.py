"""The code that normally runs only on GPUs, run on the CPU: so that the first real GPU run does not fail on it.

On CUDA the trainer builds the model on the meta device and materializes it shard by shard, gathers FSDP's weights
in bfloat16 and reduces gradients in float32, compiles every block (with activation checkpointing in the GPU
configs), steps the fused AdamW kernel on ``DTensor`` parameters (with a GradScaler on float16 GPUs), clips
``DTensor`` gradients and samples in bf16. Here each switch is forced on 2 CPU processes (gloo;
``_gpu_path_helpers``) and compared with float32 eager runs of the same global batch:

* meta init: every parameter materialized with ``init_weights``'s statistics, no buffers, the same logits as a plain
  ``Llama`` with the gathered weights; it trains like the seeded CPU init (other weights, so compared loosely);
* gloo all-gathers bfloat16 and reduce-scatters float32, so FSDP's ``MixedPrecisionPolicy`` runs as on NCCL: its
  losses stay within ``BF16_RTOL`` of float32 (measured 3.6e-4; bf16 autocast on one process: 6e-5);
* ``torch.compile`` with the ``aot_eager`` backend (Dynamo + AOTAutograd, the parts that meet FSDP's hooks and
  checkpointing; Inductor once, ``slow``): float32 losses equal eager's to ``RTOL``;
* fused and foreach AdamW agree on ``DTensor`` parameters (measured 3e-7 after 3 steps at lr 1e-2), and skip the
  same float16 overflow steps;
* ``clip_grad_norm_`` returns the global norm as a replicated ``DTensor``, equal to one process's (measured 3.4e-7).

Two bugs were found this way and fixed: compile + activation checkpointing compiled nothing (the blocks ran
eagerly: ``train.wrapping.checkpointed``), and the trainer's samples compiled new graphs of every block (they now
run eagerly).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _gpu_path_helpers import CompileCounter, compiling_with, gpu_path_scenarios, inductor_step
from _parallel_helpers import run_config, spawn
from _train_helpers import one_thread, small_corpus  # noqa: F401 (a fixture)

from minillama.config import get_preset
from minillama.generate import generate
from minillama.model import Llama
from minillama.parallel.sharded_checkpoint import is_sharded_checkpoint
from minillama.train.config import TrainConfig
from minillama.train.metrics import read_metrics
from minillama.train.trainer import Trainer
from minillama.train.wrapping import wrap_single_device

RTOL = 1e-6  # float32 runs that differ only in the order of additions (FSDP's reductions, AOTAutograd's graphs)
BF16_RTOL = 2e-3  # bf16 weights/activations against float32, per step over 8 steps (measured at most 3.6e-4)
STEPS = 8  # run_config's max_steps


def _quiet(text: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process float32 and bf16 references, then every two-rank scenario in one spawn."""
    workdir = tmp_path_factory.mktemp("gpu_paths")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("MINILLAMA_CACHE", str(workdir / "cache"))
            corpus = small_corpus(workdir, chars=19_700)
            single = Trainer(run_config(workdir / "single", corpus), log=_quiet)
            single.fit()
            Trainer(run_config(workdir / "single_bf16", corpus, dtype="bfloat16"), log=_quiet).fit()
            spawn(gpu_path_scenarios, str(workdir), str(corpus))
    finally:
        torch.set_num_threads(threads)
    results = json.loads((workdir / "results" / "rank_0.json").read_text())
    return SimpleNamespace(workdir=workdir, results=results, single=single)


def metric(run_dir: Path, key: str = "loss") -> torch.Tensor:
    return torch.tensor([r[key] for r in read_metrics(run_dir) if r["kind"] == "train"], dtype=torch.float64)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    assert len(actual) == len(expected) == STEPS
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=0)


# --- meta-device init -------------------------------------------------------------------------------------------------


def test_meta_init_materializes_every_parameter_as_init_weights_says(runs):
    meta = runs.results["fsdp_meta"]
    assert meta["buffers"] == []  # nothing left uninitialized besides the parameters: RoPE is computed in forward
    assert meta["on_meta"] == [] and meta["finite"]
    config = get_preset("nano", vocab_size=runs.single.model_config.vocab_size)
    plain = dict(Llama(config).named_parameters())
    assert sorted(meta["stats"]) == sorted(plain)
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)  # GPT-2's scaled init of wo and w2
    for name, stats in meta["stats"].items():
        assert stats["shape"] == list(plain[name].shape), name
        if name.endswith("norm.weight"):
            assert stats["mean"] == 1 and stats["std"] == 0, name
            continue
        expected = residual_std if name.endswith(("wo.weight", "w2.weight")) else 0.02
        assert stats["std"] == pytest.approx(expected, rel=0.1), name
        assert abs(stats["mean"]) < 4 * expected / math.sqrt(plain[name].numel()), name


def test_meta_init_model_computes_what_a_plain_model_with_its_weights_computes(runs):
    # FSDP re-pointed its gathered parameters at the materialized shards: no stale meta or uninitialized storage
    assert runs.results["fsdp_meta"]["logits_error"] < 1e-5


def test_meta_init_trains_like_the_seeded_init(runs):
    """The weights differ from the seeded CPU init (which draws nn.Linear's own init first, and one stream for the
    whole tensor), so the losses are compared loosely: a start at ln(vocab) and the same progress."""
    meta, seeded = metric(runs.workdir / "fsdp_meta"), metric(runs.workdir / "fsdp")
    assert torch.isfinite(meta).all()
    assert meta[0] == pytest.approx(math.log(runs.single.model_config.vocab_size), abs=0.1)
    assert meta[-1] < meta[0] - 0.5
    assert meta[-1] == pytest.approx(float(seeded[-1]), rel=0.05)  # measured 2.7%


def test_meta_init_on_a_cpu_mesh_repeats_the_random_shards(runs):
    """A CPU-only property: DTensor's random ops keep shards distinct on CUDA meshes only (the offset-based RNG
    tracker); on gloo every rank draws its shard from its own generator, seeded alike, so rank 1's embedding rows
    repeat rank 0's first rows. The trainer builds on meta only on CUDA; on a CPU mesh, call ``init_weights`` before
    sharding. If this starts failing, PyTorch has gained CPU support and the comment in _gpu_path_helpers is stale."""
    assert runs.results["fsdp_meta"]["shards_repeat"]


def test_meta_init_with_tied_embeddings_matches_a_plain_model(runs):
    tied = runs.results["tied_meta"]
    assert "output.weight" not in tied["names"]
    assert tied["grad_error"] < 1e-5


# --- FSDP's bf16 mixed-precision policy on gloo -----------------------------------------------------------------------


def test_fsdp_bf16_weights_track_float32(runs):
    bf16, fp32 = metric(runs.workdir / "fsdp_bf16"), metric(runs.workdir / "fsdp")
    assert not torch.equal(bf16, fp32)  # the policy did change the arithmetic
    assert_close(bf16, fp32, BF16_RTOL)
    assert_close(metric(runs.workdir / "fsdp_bf16", "grad_norm"), metric(runs.workdir / "fsdp", "grad_norm"),
                 1e-2)  # measured 4.2e-3
    result = runs.results["fsdp_bf16"]
    assert result["param_dtypes"] == ["torch.float32"]  # the sharded master weights stay float32
    assert len(result["samples"]) == 1  # bf16 sampling through the sharded model (a KV cache in float32)


# --- torch.compile per block under FSDP (and activation checkpointing) ------------------------------------------------


def test_compiled_blocks_run_under_fsdp_and_match_eager(runs):
    compiled = runs.results["fsdp_compile"]
    n_layers = get_preset("nano").n_layers
    assert compiled["calls"] >= n_layers * STEPS  # every block's forward ran a compiled graph, every step
    assert_close(metric(runs.workdir / "fsdp_compile"), metric(runs.workdir / "fsdp"), RTOL)


def test_compile_with_activation_checkpointing_matches_eager(runs):
    assert_close(metric(runs.workdir / "fsdp_compile_ac"), metric(runs.workdir / "fsdp"), RTOL)


def test_compile_with_activation_checkpointing_runs_compiled_blocks(runs):
    assert runs.results["fsdp_compile_ac"]["calls"] > 0
    assert runs.results["gpu_recipe"]["calls"] > 0


def test_sampling_does_not_recompile_the_blocks(runs):
    assert runs.results["fsdp_compile"]["graphs_while_sampling"] == 0


# --- the whole GPU recipe at once -------------------------------------------------------------------------------------


def test_gpu_recipe_meta_bf16_compile_checkpointing_fused_trains(runs):
    """configs/llama3.1-8b-8xh100.toml's switches together; the same meta init as ``fsdp_meta``, in float32."""
    recipe = runs.results["gpu_recipe"]
    assert recipe["optimizer_fused"] and recipe["param_dtypes"] == ["torch.float32"]
    assert_close(metric(runs.workdir / "gpu_recipe"), metric(runs.workdir / "fsdp_meta"), BF16_RTOL)
    assert len(recipe["samples"]) == 1
    assert is_sharded_checkpoint(runs.workdir / "gpu_recipe" / "checkpoints" / f"step_{STEPS}")


# --- fused AdamW and clip_grad_norm_ on DTensors ----------------------------------------------------------------------


def test_fused_adamw_on_dtensor_parameters_matches_foreach(runs):
    direct = runs.results["direct"]
    assert direct["fused_vs_foreach"] < 1e-6  # measured 3.2e-7 (weights ~0.02, 3 steps of lr 1e-2)
    assert direct["fused_vs_single"] < 2e-5  # and one process on the whole batch (measured 4.4e-6)


def test_clip_grad_norm_of_dtensor_gradients_is_the_global_norm(runs):
    direct = runs.results["direct"]
    for sharded, single in ((direct["norms"], direct["single_norms"]),
                            (direct["clipped_norms"], direct["single_clipped_norms"])):
        assert [n["type"] for n in sharded] == ["DTensor"] * 3
        assert all(n["replicated"] == [True] for n in sharded)  # reduced over ranks, not a partial sum
        for a, b in zip(sharded, single, strict=True):
            assert a["value"] == pytest.approx(b["value"], rel=1e-5)
    assert direct["clipped_norms"][0]["value"] > 0.5  # clipping did act on every rank ...
    assert direct["clipped_vs_single"] < 2e-5  # ... with the global norm's coefficient
    # and in the trainer: the logged gradient norms of FSDP are those of one process
    assert_close(metric(runs.workdir / "fsdp", "grad_norm"), metric(runs.workdir / "single", "grad_norm"), 1e-5)


# --- bf16 on one process: the train step and sampling -----------------------------------------------------------------


def test_bf16_autocast_train_step_tracks_float32(runs):
    bf16, fp32 = metric(runs.workdir / "single_bf16"), metric(runs.workdir / "single")
    assert not torch.equal(bf16, fp32)
    assert_close(bf16, fp32, BF16_RTOL)


def test_float16_loss_scaling_with_fused_adamw_skips_the_same_steps(runs, monkeypatch, one_thread):  # noqa: F811
    """GPUs without bf16 (T4, V100) train in float16 with a GradScaler, and on CUDA AdamW is the fused kernel, which
    receives the scaler's ``found_inf`` and must skip the overflowing steps itself."""
    import minillama.train.trainer as trainer_module

    monkeypatch.setenv("MINILLAMA_CACHE", str(runs.workdir / "cache"))
    build_optimizer = trainer_module.build_optimizer
    weights, overflows, losses = {}, {}, {}
    for fused in (False, True):
        if fused:
            monkeypatch.setattr(trainer_module, "build_optimizer",
                                lambda model, config, device: build_optimizer(model, config, torch.device("cuda")))
        run_dir = runs.workdir / f"float16_fused_{fused}"
        trainer = Trainer(run_config(run_dir, runs.workdir / "corpus.txt", dtype="float16"), log=_quiet)
        assert bool(trainer.optimizer.defaults["fused"]) == fused
        trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)  # too large: early steps overflow
        trainer.fit()
        weights[fused] = trainer.model.state_dict()
        overflows[fused] = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "overflow"]
        losses[fused] = metric(run_dir)
    assert overflows[True] == overflows[False] and 0 < len(overflows[True]) < STEPS  # measured: steps 1, 2, 4
    assert_close(losses[True], losses[False], 1e-5)
    assert max(float((weights[True][k] - weights[False][k]).abs().max()) for k in weights[True]) < 1e-4  # 1.7e-5


@torch.no_grad()
def test_bf16_greedy_generation_matches_float32(runs, one_thread):  # noqa: F811
    model = runs.single.model.eval()
    prompt = runs.single.data.tokenizer.encode("The ")
    reference = generate(model, prompt, 16, temperature=0)
    bf16_model = Llama(model.config).to(torch.bfloat16)
    bf16_model.load_state_dict(model.state_dict())
    # the test is meaningful: where the float32 top-2 margin exceeds twice the bf16 error, argmax cannot flip
    logits, bf16_logits = model(reference[:, :-1]), bf16_model(reference[:, :-1]).float()
    top2 = logits[0, len(prompt) - 1:].topk(2, dim=-1).values
    assert float((top2[:, 0] - top2[:, 1]).min()) > 2 * float((bf16_logits - logits).abs().max())
    assert torch.equal(generate(bf16_model, prompt, 16, temperature=0), reference)  # a bf16 KV cache
    assert torch.equal(generate(bf16_model, prompt, 16, temperature=0, use_cache=False), reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer's samples: fp32 weights and cache, bf16 matmuls
        assert torch.equal(generate(model, prompt, 16, temperature=0), reference)


# --- compile on one process -------------------------------------------------------------------------------------------


def _saved_activation_bytes(model: torch.nn.Module, tokens: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass of ``model(tokens)``, the parameters themselves excluded."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if tensor.untyped_storage().data_ptr() not in parameters:
            total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(tokens).sum().backward()
    return total


def _wrapped(compile: bool, activation_checkpointing: bool, counter: CompileCounter | None = None) -> Llama:
    torch.manual_seed(0)
    model = Llama(get_preset("nano", n_layers=4))
    with compiling_with(counter) if counter else contextlib.nullcontext():
        wrap_single_device(model, TrainConfig(compile=compile, activation_checkpointing=activation_checkpointing))
    return model


@pytest.fixture
def fresh_dynamo():
    """Forget the graphs compiled by a test, so that the next one starts from an empty cache."""
    yield
    torch._dynamo.reset()


def test_compile_reuses_one_graph_for_every_block(fresh_dynamo):
    counter = CompileCounter()
    model = _wrapped(compile=True, activation_checkpointing=False, counter=counter)
    tokens = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        model(tokens).sum().backward()
    assert (counter.graphs, counter.calls) == (1, 2 * 4)  # one graph, run by each of the 4 blocks, twice


def test_compiled_checkpointed_blocks_save_what_eager_checkpointing_saves(fresh_dynamo):
    tokens = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))
    eager = _saved_activation_bytes(_wrapped(compile=False, activation_checkpointing=True), tokens)
    counter = CompileCounter()
    model = _wrapped(compile=True, activation_checkpointing=True, counter=counter)
    model(tokens).sum().backward()  # compiles
    compiled = _saved_activation_bytes(model, tokens)
    assert counter.calls > 0  # the compiled graphs ran ...
    # ... and still recompute the blocks' insides in the backward: measured 1.07 x eager checkpointing (the graphs
    # also keep each block's RoPE table), against 8.5 x for compiled blocks without checkpointing
    assert compiled <= 1.1 * eager


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="Inductor generates C++ on the CPU and needs a compiler")
def test_inductor_compiled_blocks_under_fsdp_with_bf16_weights(tmp_path):
    spawn(inductor_step, str(tmp_path), world_size=1)  # one process: two would compile at once on the 2 cores
    result = json.loads((tmp_path / "inductor.json").read_text())
    assert result["logits"] == "torch.bfloat16" and result["graphs"] >= 1 and result["calls"] == 2
    assert result["grad_error"] < 3e-2  # bf16 against float32 eager (measured 1e-2)
