"""DDP and FSDP on 2 CPU processes (gloo) against one process: the same losses, step by step.

One process with a batch of 4 windows and 2 ranks with 2 windows each see the same global batch (the loader deals
each rank its slice of it), so with float32 arithmetic the two runs differ only in the order of additions: the
gradient of the mean over 4 windows versus the average of two means over 2. Over 8 AdamW steps the losses agree to
``RTOL`` relative (measured: at most 1.1e-7 for the training losses and 2.4e-7 for the validation losses, a
few float32 ulps). The same holds for gradient accumulation (2 micro-batches of 1 window per
rank) and across a sharded checkpoint written by 2 ranks and resumed by 1, and the other way round.

Every two-rank scenario runs in one spawn of two processes (``_parallel_helpers.two_rank_scenarios``); this module
runs the single-process runs around it and checks what they all wrote.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _parallel_helpers import REAL_PRESETS, WORLD_SIZE, run_config, spawn, two_rank_scenarios
from _train_helpers import small_corpus

from minillama.config import get_preset
from minillama.data.loader import eval_windows
from minillama.parallel.distributed import init_distributed
from minillama.parallel.sharded_checkpoint import ShardedCheckpointer, is_sharded_checkpoint
from minillama.parallel.training import DistributedTrainer
from minillama.train.metrics import read_metrics
from minillama.train.trainer import Trainer

RTOL = 1e-6  # relative difference allowed between the loss of one process and of two ranks, at every step


def _quiet(text: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All runs, once: the single-process reference, the two-rank scenarios, and the resumed runs."""
    workdir = tmp_path_factory.mktemp("parallel")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MINILLAMA_CACHE", str(workdir / "cache"))  # the spawned processes inherit it
        corpus = small_corpus(workdir, chars=19_700)
        single = Trainer(run_config(workdir / "single", corpus), log=_quiet)
        # 61 validation windows: rank 0 evaluates 16 batches of 2, rank 1 only 15. Under FSDP every forward is a
        # collective, so the trainer must keep the ranks in step (a hang here means it does not).
        assert [len(eval_windows(len(single.data.val), 32, r, WORLD_SIZE)) for r in range(WORLD_SIZE)] == [31, 30]
        single.fit()
        # One process writes a sharded checkpoint at step 4; the two ranks continue it (1 -> 2).
        one = Trainer(run_config(workdir / "resumed_1to2", corpus), log=_quiet)
        one.checkpointer = ShardedCheckpointer(workdir / "resumed_1to2" / "checkpoints")
        one.fit(stop_at=4)
        spawn(two_rank_scenarios, str(workdir), str(corpus))
        # 2 -> 1: the FSDP run's folder as it was at its step-4 checkpoint, continued by one process.
        shutil.copytree(workdir / "fsdp", workdir / "resumed_2to1")
        shutil.rmtree(workdir / "resumed_2to1" / "checkpoints" / "step_8")
        config = run_config(workdir / "resumed_2to1", corpus, batch_size=4, num_samples=1,
                            resume=str(workdir / "resumed_2to1"))
        resumed = DistributedTrainer(config, init_distributed("cpu"), log=_quiet)
        assert resumed.step == 4 and isinstance(resumed.checkpointer, ShardedCheckpointer)
        resumed.fit()
    torch.set_num_threads(threads)
    results = [json.loads((workdir / "results" / f"rank_{r}.json").read_text()) for r in range(WORLD_SIZE)]
    return workdir, results


def losses(run_dir, kind="train", key="loss") -> list[float]:
    return [r[key] for r in read_metrics(run_dir) if r["kind"] == kind]


def assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    torch.testing.assert_close(torch.tensor(actual, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                               rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_data_parallel_matches_one_process(runs, name):
    workdir, _ = runs
    reference = losses(workdir / "single")
    assert len(reference) == 8 and reference[0] > reference[-1]  # it trains
    assert_close(losses(workdir / name), reference)
    assert_close(losses(workdir / name, "eval", "val_loss"), losses(workdir / "single", "eval", "val_loss"))


def test_fsdp_shards_every_parameter(runs):
    _, results = runs
    assert results[0]["fsdp_param_types"] == ["DTensor"]
    total = results[0]["fsdp_num_params"]
    assert results[0]["fsdp_local_numel"] + results[1]["fsdp_local_numel"] == total
    assert results[0]["fsdp_local_numel"] < total * 0.6


@pytest.mark.parametrize("name", ["ddp_accum", "fsdp_accum"])
def test_gradient_accumulation_matches_the_big_batch(runs, name):
    workdir, _ = runs
    assert_close(losses(workdir / name), losses(workdir / "single"))


def test_accumulation_communicates_as_planned(runs):
    _, results = runs
    # DDP: the same number of bucket all-reduces per optimizer step with 2 micro-batches as with 1 (no_sync).
    assert results[0]["ddp_accum_allreduces_per_step"] == results[0]["ddp_allreduces_per_step"] >= 1
    # FSDP: one gradient reduce-scatter per unit per micro-batch, so that no rank ever holds a whole unit's gradient
    # between micro-batches (deferring them would keep every unsharded gradient until the end). nano is untied, so
    # apply_fsdp makes 4 units: the embedding table, 2 blocks, the final norm with the output head (the root is left
    # with no parameters and reduces nothing).
    units = 1 + get_preset("nano").n_layers + 1
    assert results[0]["fsdp_reduce_scatters_per_step"] == units
    assert results[0]["fsdp_accum_reduce_scatters_per_step"] == 2 * units


@pytest.mark.parametrize("name", ["resumed_2to1", "resumed_1to2"])
def test_sharded_checkpoint_resumes_on_another_world_size(runs, name):
    workdir, results = runs
    assert_close(losses(workdir / name), losses(workdir / "single"))
    assert_close(losses(workdir / name, "eval", "val_loss"), losses(workdir / "single", "eval", "val_loss"))
    checkpoint = workdir / name / "checkpoints" / "step_8"
    assert is_sharded_checkpoint(checkpoint)
    written_by = 1 if name == "resumed_2to1" else 2
    assert json.loads((checkpoint / "meta.json").read_text())["world_size"] == written_by
    assert len(list(checkpoint.glob("*.distcp"))) == written_by
    if name == "resumed_1to2":
        assert results[0]["resumed_1to2_start"] == 4


def test_fsdp_samples_on_every_rank_are_written_once(runs):
    workdir, _ = runs
    text = (workdir / "fsdp" / "samples.txt").read_text()
    assert text.count("=== step 4, sample 1") == 1 and text.count("=== step 8, sample 1") == 1


def test_every_real_preset_shards_on_the_meta_device(runs):
    _, results = runs
    for name in REAL_PRESETS:
        per_rank = [r["meta"]["local_numel"][name] for r in results]
        total = get_preset(name).num_params()
        assert sum(per_rank) == total, name
        assert max(per_rank) - min(per_rank) <= total // 1000, name  # an even split, up to rounding of rows


def test_meta_init_materializes_initialized_shards(runs):
    _, results = runs
    meta = results[0]["meta"]
    n_layers = get_preset("tiny").n_layers
    assert meta["norm_ones"]
    assert meta["init_std"]["tok_embeddings.weight"] == pytest.approx(0.02, rel=0.05)
    assert meta["init_std"]["layers.0.feed_forward.w1.weight"] == pytest.approx(0.02, rel=0.05)
    assert meta["init_std"]["layers.0.attention.wo.weight"] == pytest.approx(0.02 / (2 * n_layers) ** 0.5, rel=0.05)
