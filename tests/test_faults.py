"""Fault injection through the public command: stop signals, hostile checkpoints, reused and shared run folders, a
full disk and a diverging run. Each test runs `minillama train` as a user does, in a subprocess, with the `nano`
preset on a slice of tinyshakespeare for a few hundred steps of 4 x 32 tokens."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minillama.data import load_text
from minillama.errors import UserError
from minillama.train.metrics import read_metrics

FLAGS = ["--model", "nano", "--seq-len", "32", "--batch-size", "4", "--warmup-steps", "5", "--eval-interval", "50",
         "--eval-batches", "2", "--num-samples", "0", "--log-interval", "1", "--threads", "1", "--no-progress",
         "--device", "cpu"]
STEPS = 80


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """A corpus (60,000 characters of tinyshakespeare) and a tokenizer cache shared by the tests of this file."""
    root = tmp_path_factory.mktemp("faults")
    corpus = root / "shakespeare.txt"
    corpus.write_text(load_text("tinyshakespeare")[:60_000])
    env = {**os.environ, "MINILLAMA_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    return {"root": root, "corpus": corpus, "env": env}


def _train(work: dict, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "minillama", "train", *FLAGS, "--corpus", str(work["corpus"]),
                             *args], capture_output=True, text=True, env=work["env"], timeout=300)
    if check is not None:
        assert result.returncode == check, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run) if r["kind"] == "train"]


def _last_step(run: Path) -> int:
    if not (run / "metrics.jsonl").is_file():
        return 0
    return max([r["step"] for r in read_metrics(run) if r["kind"] == "train"], default=0)


def _wait_for_step(run: Path, process: subprocess.Popen, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _last_step(run) < step:
        assert process.poll() is None, f"the run ended before step {step}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no step {step} within {timeout} s"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def straight(work) -> list[float]:
    """The losses of the uninterrupted run."""
    run = work["root"] / "straight"
    _train(work, "--max-steps", str(STEPS), "--run-dir", str(run))
    return _losses(run)


# --- 3. stop signals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_saves_at_a_step_boundary_and_the_resume_is_exact(work, straight, signal_name, tmp_path):
    number = signal.Signals[signal_name]
    run = tmp_path / "run"
    at = random.Random(number).randint(3, STEPS // 3)  # a different, reproducible step for each signal
    process = subprocess.Popen([sys.executable, "-m", "minillama", "train", *FLAGS, "--corpus", str(work["corpus"]),
                                "--max-steps", str(STEPS), "--run-dir", str(run)], env=work["env"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(run, process, at)
    process.send_signal(number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + number, err
    stopped = _last_step(run)
    assert at <= stopped < STEPS
    assert f"{signal_name} at step {stopped}: saved the checkpoint of this step" in err
    assert "Traceback" not in err
    checkpoints = run / "checkpoints"
    assert (checkpoints / f"step_{stopped}" / "train_state.pt").is_file()
    assert not list(checkpoints.glob(".tmp-*"))

    _train(work, "--resume", str(run))  # the run's own config.toml: same max_steps
    assert _losses(run) == straight  # bit for bit, as after a kill -9 between checkpoints


def _torchrun(work: dict, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
            "minillama.parallel", "train", *FLAGS, "--parallel", "ddp", "--corpus", str(work["corpus"]),
            "--batch-size", "2", *args]


def test_stop_signals_reach_every_rank_under_torchrun_and_the_resume_is_exact(work, tmp_path):
    """SIGTERM to torchrun (SLURM's preemption notice): both ranks finish the same step, save it and stop; resumed
    under torchrun, the run's losses equal those of an uninterrupted 2-rank run, bit for bit."""
    steps = "40"
    uninterrupted = tmp_path / "ddp-straight"
    subprocess.run(_torchrun(work, "--max-steps", steps, "--run-dir", str(uninterrupted)), env=work["env"],
                   check=True, capture_output=True, timeout=300)
    run = tmp_path / "ddp"
    process = subprocess.Popen(_torchrun(work, "--max-steps", steps, "--run-dir", str(run)), env=work["env"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(run, process, 5, timeout=180)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    stopped = _last_step(run)
    assert stopped < int(steps) and "SIGTERM at step" in err, err[-3000:]
    assert (run / "checkpoints" / f"step_{stopped}" / "train_state.pt").is_file()
    assert not list((run / "checkpoints").glob(".tmp-*"))

    resumed = subprocess.run(_torchrun(work, "--resume", str(run)), env=work["env"], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _losses(run) == _losses(uninterrupted)


# --- 1. untrusted checkpoints ------------------------------------------------------------------------------------


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_dcp_metadata_never_runs(work, tmp_path):
    run = tmp_path / "run"
    _train(work, "--max-steps", "3", "--run-dir", str(run))
    checkpoint = run / "checkpoints" / "step_3"
    marker = tmp_path / "pwned"
    (checkpoint / ".metadata").write_bytes(pickle.dumps(_RunsACommand(marker)))  # now it looks sharded
    result = _train(work, "--resume", str(run), "--max-steps", "6", check=2)
    assert not marker.exists()
    assert "asks to run posix.system" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dcp_shards_outside_the_folder_are_refused(tmp_path):
    import torch.distributed.checkpoint as dcp

    from minillama.parallel.safe_metadata import read_metadata

    dcp.save({"w": torch.ones(3)}, checkpoint_id=tmp_path / "ok", no_dist=True)
    metadata = read_metadata(tmp_path / "ok" / ".metadata")  # a real one passes
    assert set(metadata.state_dict_metadata) == {"w"}
    for info in metadata.storage_data.values():
        info.relative_path = "../../secret.distcp"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(UserError, match="outside its folder"):
        read_metadata(tmp_path / "bad" / ".metadata")


def test_an_index_naming_a_shard_outside_the_folder_is_refused(tmp_path, capsys):
    from minillama.cli import main
    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.weights import save_hf

    folder = save_hf(Llama(get_preset("nano")), tmp_path / "hf")
    (folder / "model.safetensors").rename(tmp_path / "outside.safetensors")
    names = json.loads(json.dumps({"weight_map": {"model.norm.weight": "../outside.safetensors"}}))
    (folder / "model.safetensors.index.json").write_text(json.dumps(names))
    assert main(["generate", str(folder), "--max-new-tokens", "2", "--device", "cpu"]) == 2
    assert "outside its folder" in capsys.readouterr().err


def test_a_cached_corpus_is_verified_by_sha256(tmp_path, monkeypatch):
    from minillama.data.corpora import corpus_path

    mirror = os.environ.get("MINILLAMA_DATA_MIRROR")
    if not mirror or not (Path(mirror) / "tinyshakespeare.txt").is_file():
        pytest.skip("needs the offline mirror of tinyshakespeare (MINILLAMA_DATA_MIRROR)")
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path))
    monkeypatch.delenv("MINILLAMA_DATA_MIRROR")
    monkeypatch.setenv("MINILLAMA_OFFLINE", "1")
    good = (Path(mirror) / "tinyshakespeare.txt").read_bytes()
    cached = tmp_path / "tinyshakespeare.txt"
    cached.write_bytes(good)
    assert corpus_path("tinyshakespeare") == cached
    cached.write_bytes(good.replace(b"ROMEO", b"RoMEO"))  # the same size, other bytes
    with pytest.raises(FileNotFoundError):  # offline: the damaged copy is dropped, not used
        corpus_path("tinyshakespeare")
    assert not cached.exists()


# --- 2. run folders ----------------------------------------------------------------------------------------------


def test_a_run_folder_is_reused_only_when_asked_and_never_by_two_runs(work, tmp_path):
    run = tmp_path / "run"
    _train(work, "--max-steps", "4", "--run-dir", str(run))
    before = _losses(run)
    again = _train(work, "--max-steps", "4", "--run-dir", str(run), check=2)
    assert "already holds a run" in again.stderr and "--resume" in again.stderr and "--overwrite" in again.stderr
    assert _losses(run) == before and (run / "checkpoints" / "step_4").is_dir()  # nothing lost or mixed

    # a live run holds the folder: a second one is refused, even with --resume or --overwrite
    process = subprocess.Popen([sys.executable, "-m", "minillama", "train", "--resume", str(run), "--max-steps",
                                "100000"], env=work["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(run, process, 6)
    process.send_signal(signal.SIGSTOP)  # frozen, it holds the lock and leaves the CPU to the others
    for extra in (["--resume", str(run)], ["--run-dir", str(run), "--overwrite"]):
        second = _train(work, *extra, "--max-steps", "100000", check=2)
        assert "in use by a run still going" in second.stderr, second.stderr
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM

    # moved, the run continues in its new place
    moved = tmp_path / "moved"
    shutil.move(run, moved)
    stopped = _last_step(moved)
    _train(work, "--resume", str(moved), "--max-steps", str(stopped + 2))
    assert _last_step(moved) == stopped + 2 and not run.exists()

    _train(work, "--max-steps", "3", "--run-dir", str(moved), "--overwrite")
    assert _last_step(moved) == 3 and [p.name for p in (moved / "checkpoints").iterdir()] == ["step_3"]


# --- 5. a full disk ----------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (needs root; skipped with the reason otherwise), unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (root needed): {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(work, small_disk):
    run = small_disk / "run"
    _train(work, "--max-steps", "10", "--checkpoint-interval", "5", "--keep-last", "1", "--run-dir", str(run))
    checkpoints = run / "checkpoints"
    ballast = small_disk / "ballast"
    # the save fails in model.safetensors (300 KiB left), then in torch.save of the optimizer (800 KiB left)
    for left_kib in (300, 800):
        ballast.write_bytes(b"")
        ballast.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - left_kib * 1024))
        full = _train(work, "--resume", str(run), "--max-steps", "20", check=2)
        lines = full.stderr.strip().splitlines()
        assert lines[-1].startswith("minillama train: error: no space left on device in "), full.stderr
        assert "Traceback" not in full.stderr
        assert not list(checkpoints.glob(".tmp-*")) and not list(checkpoints.glob(".old-*"))
        assert (checkpoints / "step_10" / "train_state.pt").is_file()

    # a kill during a save leaves a temporary folder: the next --resume removes it before anything else
    (checkpoints / ".tmp-step_12-99999").mkdir()
    ballast.unlink()
    _train(work, "--resume", str(run), "--max-steps", "12")
    assert not list(checkpoints.glob(".tmp-*")) and (checkpoints / "step_12").is_dir()


# --- 4. the divergence guard -------------------------------------------------------------------------------------


def test_the_guard_names_a_checkpoint_that_really_is_good(work, tmp_path):
    run = tmp_path / "run"
    _train(work, "--max-steps", "20", "--checkpoint-interval", "5", "--eval-interval", "10", "--run-dir", str(run))
    # "best" is chosen among checkpoints evaluated at their own step: step_15's meta has no (stale) val loss
    meta = {p.name: json.loads((p / "meta.json").read_text()) for p in (run / "checkpoints").iterdir()}
    assert meta["step_20"]["val_loss"] is not None and meta["step_15"]["val_loss"] is None
    # --lr 10 from step 20 on: losses explode but stay finite; checkpoints are saved at every step, also while the
    # steps are being skipped, and keep_last 2 would delete the good one if the guard did not protect it.
    diverged = _train(work, "--resume", str(run), "--lr", "10", "--max-steps", "60", "--checkpoint-interval", "1",
                      "--keep-last", "2", check=1)
    assert "loss spike" in diverged.stderr and "Traceback" not in diverged.stderr
    named = re.search(r"the last good checkpoint is (\S+);", diverged.stderr)
    assert named, diverged.stderr
    good = Path(named.group(1))
    skips = [r["step"] for r in read_metrics(run) if r["kind"] == "skip"]
    assert good.is_dir() and int(good.name[5:]) < skips[0] - 1  # the step after it was applied, not skipped
    # Truly good: continuing from it at a sane learning rate trains without a single skipped step.
    _train(work, "--resume", str(good), "--lr", "1e-3", "--max-steps", str(int(good.name[5:]) + 10))
    assert not [r for r in read_metrics(run) if r["kind"] == "skip"]
    losses = _losses(run)
    assert max(losses[-10:]) < 2 * min(losses[:5])
