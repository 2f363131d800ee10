"""`minillama train` and `minillama plot` run as a user runs them: a few steps of `nano` in a subprocess."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from _train_helpers import small_corpus

from minillama.cli import main
from minillama.errors import UserError
from minillama.train import cli as train_cli
from minillama.train.config import TrainConfig
from minillama.train.metrics import read_metrics


def _minillama(*args, cwd, cache):
    env = {**os.environ, "MINILLAMA_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "minillama", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env=env)


def test_train_then_plot_then_resume(tmp_path, capsys):
    corpus = small_corpus(tmp_path)
    run = tmp_path / "run"
    flags = ["--model", "nano", "--corpus", str(corpus), "--seq-len", "32", "--batch-size", "4",
             "--warmup-steps", "2", "--eval-interval", "3", "--eval-batches", "2", "--sample-tokens", "12",
             "--num-samples", "1", "--log-interval", "1", "--no-progress", "--threads", "1", "--run-dir", str(run)]
    result = _minillama("train", *flags, "--max-steps", "4", cwd=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "val bits per byte" in result.stdout and "-- sample 1 --" in result.stdout
    assert (run / "checkpoints" / "step_4" / "model.safetensors").is_file()
    assert {p.name for p in (run / "plots").iterdir()} == {"loss.png", "lr.png", "throughput.png"}
    assert TrainConfig.from_toml(run / "config.toml").max_steps == 4
    assert "step 3" in (run / "samples.txt").read_text()
    records = read_metrics(run)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]

    assert main(["plot", str(run), "--out", str(tmp_path / "figures")]) == 0
    assert "val bits per byte" in capsys.readouterr().out and (tmp_path / "figures" / "loss.png").is_file()

    # --resume reads the run's own config.toml: only the new step count needs saying.
    more = _minillama("train", "--resume", str(run), "--max-steps", "6", cwd=tmp_path, cache=tmp_path / "cache")
    assert more.returncode == 0, more.stderr
    assert "resumed from" in more.stderr
    assert [r["step"] for r in read_metrics(run) if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_clear_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "typo.toml").write_text("learning_rate = 0.1\n")
    assert main(["train", "--config", str(tmp_path / "typo.toml")]) == 2
    assert "unknown key(s)" in capsys.readouterr().err
    assert main(["train", "--model", "nano", "--corpus", str(tmp_path / "missing.txt")]) == 2
    assert "neither a known corpus" in capsys.readouterr().err
    assert main(["train", "--model", "no-such-model"]) == 2
    assert "unknown model preset" in capsys.readouterr().err
    # The single-process command itself (without chapter 9's launcher) points --parallel at torchrun.
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    with pytest.raises(UserError, match="torchrun"):
        train_cli.run(parser.parse_args(["--parallel", "fsdp"]))
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
