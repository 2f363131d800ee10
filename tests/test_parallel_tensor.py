"""Tensor parallelism (with sequence parallelism) and its 2D composition with FSDP, on CPU processes (gloo),
against one process.

One process with a batch of 4 windows is the reference. ``tp = 2`` (2 processes, one data-parallel rank) trains on
the same 4 windows with every weight matrix split in two; ``dp = 2 x tp = 2`` (4 processes) deals the windows over
2 data-parallel ranks, with activation checkpointing and 2 micro-batches. In float32 only the order of additions
differs (the row-wise matmuls sum two partial products, the all-reduces sum in their own order): over 8 AdamW steps
the losses agree to ``RTOL`` relative (measured: about 1e-7, a few float32 ulps). Sharded checkpoints move between
layouts: tp = 2 -> one process, one process -> tp = 2.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _parallel_helpers import run_config, spawn
from _tensor_parallel_helpers import four_rank_2d, two_rank_tensor_parallel
from _train_helpers import small_corpus

from minillama.config import get_preset
from minillama.parallel.distributed import init_distributed
from minillama.parallel.parallelize import ParallelConfig
from minillama.parallel.sharded_checkpoint import ShardedCheckpointer
from minillama.parallel.tensor_parallel import check_tensor_parallel
from minillama.parallel.training import DistributedTrainer
from minillama.train.config import TrainConfig
from minillama.train.metrics import read_metrics
from minillama.train.trainer import Trainer

RTOL = 1e-5


def _quiet(text: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process reference, the 2- and 4-process runs, and the resumed runs, once."""
    workdir = tmp_path_factory.mktemp("tensor_parallel")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MINILLAMA_CACHE", str(workdir / "cache"))  # the spawned processes inherit it
        corpus = small_corpus(workdir, chars=19_700)
        single = Trainer(run_config(workdir / "single", corpus, num_samples=1), log=_quiet)
        single.fit()
        one = Trainer(run_config(workdir / "resumed_1to_tp2", corpus), log=_quiet)
        one.checkpointer = ShardedCheckpointer(workdir / "resumed_1to_tp2" / "checkpoints")
        one.fit(stop_at=4)
        spawn(two_rank_tensor_parallel, str(workdir), str(corpus), world_size=2)
        spawn(four_rank_2d, str(workdir), str(corpus), world_size=4, timeout_s=300)
        # tp = 2 -> one process: the tp = 2 run's folder as it was at its step-4 checkpoint.
        shutil.copytree(workdir / "tp2", workdir / "resumed_tp2_to1")
        shutil.rmtree(workdir / "resumed_tp2_to1" / "checkpoints" / "step_8")
        config = run_config(workdir / "resumed_tp2_to1", corpus, batch_size=4, parallel="fsdp", tensor_parallel=1,
                            resume=str(workdir / "resumed_tp2_to1"))
        resumed = DistributedTrainer(config, init_distributed("cpu", group_of_one=True), log=_quiet)
        assert resumed.step == 4
        resumed.fit()
    torch.set_num_threads(threads)

    def results(name, world_size):
        return [json.loads((workdir / "results" / f"{name}_rank_{r}.json").read_text()) for r in range(world_size)]

    return workdir, single, {"tp2": results("tp2", 2), "dp2_tp2": results("dp2_tp2", 4)}


def losses(run_dir, kind="train", key="loss") -> list[float]:
    return [r[key] for r in read_metrics(run_dir) if r["kind"] == kind]


def assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected) > 0
    torch.testing.assert_close(torch.tensor(actual, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                               rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", ["tp2", "dp2_tp2", "resumed_tp2_to1", "resumed_1to_tp2"])
def test_tensor_parallel_matches_one_process(runs, name):
    workdir, _, _ = runs
    reference = losses(workdir / "single")
    assert len(reference) == 8 and reference[0] > reference[-1]  # it trains
    assert_close(losses(workdir / name), reference)
    assert_close(losses(workdir / name, "eval", "val_loss"), losses(workdir / "single", "eval", "val_loss"))
    assert_close(losses(workdir / name, key="grad_norm"), losses(workdir / "single", key="grad_norm"))  # clipping
    # the validation tokens are counted once per data-parallel rank, not once per tensor-parallel rank
    assert losses(workdir / name, "eval", "val_tokens") == losses(workdir / "single", "eval", "val_tokens")


def test_weights_are_split_over_the_tensor_parallel_ranks(runs):
    _, single, results = runs
    tp2 = results["tp2"]
    config = single.model_config
    assert tp2[0]["mesh"] == ["dp", "tp"]
    # wq: tensor parallelism splits the output features (rows) over tp; FSDP then shards the rows of each slice
    # over dp (one rank here: nothing to split), which DTensor records as a strided shard of dim 0
    assert tp2[0]["wq_placements"] == ["_StridedShard(0)", "Shard(0)"]
    assert tp2[0]["wq_local_shape"] == [config.n_heads * config.head_dim // 2, config.dim]
    assert tp2[0]["norm_placements"] == ["Shard(0)", "Replicate"]  # norms: sharded by FSDP, replicated over tp
    # every matrix is split in two and every norm weight is held whole by both ranks
    norms = tp2[0]["norm_numel"]
    assert tp2[0]["local_numel"] + tp2[1]["local_numel"] == config.num_params() + norms
    # an odd vocabulary (257): rank 0 holds one more row of the embedding table and one more of the head
    assert tp2[0]["local_numel"] - tp2[1]["local_numel"] == 2 * config.dim


def test_2d_mesh_deals_data_by_data_parallel_rank(runs):
    _, _, results = runs
    ranks = results["dp2_tp2"]
    assert [(r["data_rank"], r["data_world_size"]) for r in ranks] == [(0, 2), (0, 2), (1, 2), (1, 2)]
    assert ranks[0]["first_batch"] == ranks[1]["first_batch"]  # one tensor-parallel group reads the same windows
    config = get_preset("nano")
    assert ranks[0]["wq_local_shape"] == [config.n_heads * config.head_dim // 4, config.dim]  # 2 (dp) x 2 (tp)


def test_tensor_parallel_samples_equal_one_process(runs):
    workdir, single, results = runs
    assert results["tp2"][0]["samples"] == results["tp2"][1]["samples"] == single.last_samples
    assert len(single.last_samples[0]) > 0


def test_meta_init_materializes_initialized_slices(runs):
    _, _, results = runs
    meta = results["tp2"][0]["meta_init"]
    assert meta["finite"] and meta["norm_ones"]
    # (on a CPU mesh both slices hold the same numbers: see meta_init_2d; tests/test_parallel_cuda.py checks that
    # they differ on GPUs, where the trainer uses this path)
    residual = 0.02 / (2 * meta["n_layers"]) ** 0.5
    expected = {"tok_embeddings.weight": 0.02, "layers.0.attention.wq.weight": 0.02, "output.weight": 0.02,
                "layers.0.attention.wo.weight": residual, "layers.1.feed_forward.w2.weight": residual}
    for name, std in expected.items():
        assert meta["std"][name] == pytest.approx(std, rel=0.05), name


@pytest.mark.xfail(strict=True, reason="with this PyTorch, compiled tensor-parallel blocks crash in the backward or "
                                       "give other gradients than eager ones; when this passes, lift the refusal of "
                                       "compile + tensor_parallel in TrainConfig and ParallelConfig")
def test_compiled_tensor_parallel_blocks_have_eager_gradients(runs):
    _, _, results = runs
    assert results["tp2"][0]["compiled_tp"] == "equal"


def test_compile_with_tensor_parallelism_is_refused():
    with pytest.raises(ValueError, match="--no-compile"):
        TrainConfig(parallel="fsdp", tensor_parallel=2, compile=True)
    with pytest.raises(ValueError, match="compile=False"):
        ParallelConfig(data_parallel="fsdp", tensor_parallel=2, compile=True)


def test_resume_starts_at_the_checkpoint(runs):
    _, _, results = runs
    assert results["tp2"][0]["resumed_start"] == 4


# --- errors, without processes ---------------------------------------------------------------------------------------


def test_tensor_parallel_needs_fsdp():
    with pytest.raises(ValueError, match="--parallel fsdp"):
        TrainConfig(tensor_parallel=2, parallel="ddp")
    with pytest.raises(ValueError, match="FSDP only.*--parallel fsdp"):  # one rule, one message
        ParallelConfig(data_parallel="ddp", tensor_parallel=2)
    with pytest.raises(ValueError, match="tensor_parallel must be positive"):
        TrainConfig(tensor_parallel=0)


@pytest.mark.parametrize(("preset", "tp", "seq_len", "message"), [
    ("nano", 4, 32, r"n_kv_heads \(2\)"),
    ("nano", 3, 33, r"n_heads \(4\)"),
    ("llama3.1-8b", 8, 8190, r"seq_len \(8190\)"),
    ("llama3.2-1b", 2, 2048, "tied embeddings"),
])
def test_indivisible_dimensions_are_refused(preset, tp, seq_len, message):
    with pytest.raises(ValueError, match=message):
        check_tensor_parallel(get_preset(preset), tp, seq_len)


def test_real_presets_split_eight_ways():
    for name in ("llama3.1-8b", "llama3.1-70b", "llama3.1-405b"):
        check_tensor_parallel(get_preset(name), 8, 8192)


def test_world_size_must_be_a_multiple_of_tp(tmp_path):
    config = run_config(tmp_path / "run", tmp_path / "corpus.txt", parallel="fsdp", tensor_parallel=2)
    with pytest.raises(ValueError, match="tensor-parallel groups of 2"):
        DistributedTrainer(config, init_distributed("cpu"), log=_quiet)
