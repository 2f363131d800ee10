"""Every mistake a person can make on the command line gets one line on stderr, exit status 2 and no traceback.

Table-driven: each row is a command with one bad input and a phrase the message must contain. The commands run
in this process through ``minillama.cli.main`` (an exception that escapes it is a traceback, and fails the test);
a few run as real subprocesses too, to check what a user's terminal shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minillama.cli import main
from minillama.config import get_preset
from minillama.data import load_text
from minillama.model import Llama
from minillama.tokenizer.bpe import BPETokenizer
from minillama.weights import save_checkpoint, save_hf

NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A nano checkpoint with its tokenizer, and broken variants of it."""
    root = tmp_path_factory.mktemp("bad_inputs")
    text = load_text("tinyshakespeare")[:20_000]
    bytes_only = {bytes([i]): i for i in range(256)}  # nano's 257 ids: the bytes and the end-of-text token
    BPETokenizer.from_ranks(bytes_only, special_tokens={"<|endoftext|>": 256}).save(root / "tokenizer.model")
    BPETokenizer().train(text, vocab_size=300).save(root / "big_model")
    torch.manual_seed(0)
    model = Llama(get_preset("nano"))
    good = save_checkpoint(model, root / "good", tokenizer_file=root / "tokenizer.model")

    truncated = root / "truncated"
    save_checkpoint(model, truncated, tokenizer_file=root / "tokenizer.model")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])

    mismatched = root / "mismatched"
    save_checkpoint(Llama(get_preset("nano", dim=128)), mismatched, tokenizer_file=root / "tokenizer.model")
    (mismatched / "config.json").write_text((good / "config.json").read_text())

    save_checkpoint(model, root / "no_tokenizer")
    garbage = root / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("{not json")
    empty = root / "empty"
    empty.mkdir()
    sharded = root / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((good / "config.json").read_text())
    (sharded / ".metadata").write_bytes(b"")
    (root / "a_file").write_text("x")
    (root / "empty_txt").write_text("")
    (root / "tiny_txt").write_text(text[:300])
    (root / "corpus_txt").write_text(text)
    (root / "configs").mkdir()
    return {name: root / name for name in ("good", "truncated", "mismatched", "no_tokenizer", "garbage", "empty",
                                           "sharded", "a_file", "empty_txt", "tiny_txt", "corpus_txt", "configs",
                                           "big_model")} | {"root": root}


GENERATE = [
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--top-p", "nan"], "--top-p must be in (0, 1]"),
    (["--temperature", "-1"], "--temperature must be a number >= 0"),
    (["--temperature", "nan"], "--temperature must be a number >= 0"),
    (["--temperature", "inf"], "--temperature must be a number >= 0"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--max-new-tokens", "-5"], "--max-new-tokens must be at least 1"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--seed", "-1"], "--seed must be between"),
    (["--device", "tpu"], "use cpu, cuda, cuda:N, mps or auto"),
    pytest.param(["--device", "cuda"], "sees no CUDA GPU", marks=pytest.mark.skipif(not NO_GPU, reason="a GPU")),
    (["--tokenizer", "{root}/missing.model"], "no tokenizer at"),
    (["--tokenizer", "{big_model}"], "more than the model's vocabulary"),
    (["--best"], "--best needs a run folder"),
]

CHECKPOINTS = [
    ("{root}/missing", "does not exist"),
    ("{a_file}", "is a file, not a folder"),
    ("{empty}", "is not a checkpoint folder"),
    ("{garbage}", "cannot load"),
    ("{truncated}", "not a valid safetensors file"),
    ("{mismatched}", "does not match the model config"),
    ("{no_tokenizer}", "no tokenizer at"),
    ("{sharded}", "is a sharded (FSDP) checkpoint"),
]

TRAIN = [
    (["--corpus", "{empty_txt}"], "too few"),
    (["--corpus", "{tiny_txt}", "--seq-len", "64", "--batch-size", "1"], "too few for one window"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "-1"], "lr must be positive"),
    (["--device", "tpu"], "device must be cpu, cuda"),
    pytest.param(["--device", "cuda"], "sees no CUDA GPU", marks=pytest.mark.skipif(not NO_GPU, reason="a GPU")),
    (["--threads", "100000"], "far more than the"),
    (["--config", "{configs}"], "a folder, not a TOML file"),
    (["--config", "{root}/missing.toml"], "no such file"),
    (["--run-dir", "{a_file}"], "is a file, not a folder"),
    (["--seed", "-1"], "seed must be between"),
    (["--seed", str(2**64)], "seed must be between"),
    (["--resume", "{root}/missing"], "does not exist"),
    (["--resume", "{empty}"], "neither a checkpoint"),
    (["--spike-factor", "0.5"], "spike_factor must be 0"),
    (["--max-steps", "0"], "max_steps must be positive"),
    (["--val-fraction", "1.5"], "val_fraction must be strictly between"),
]

PLAN = [
    (["--internode-gbps", "0"], "internode_gbps must be a positive number"),
    (["--internode-gbps", "-5"], "internode_gbps must be a positive number"),
    (["--internode-gbps", "nan"], "internode_gbps must be a positive number"),
    (["--seq", "0"], "seq_len must be a positive integer"),
    (["--gpus", "0"], "gpus must be a positive integer"),
    (["--mfu", "nan"], "mfu must be in (0, 1]"),
    (["--batch-tokens", "lots"], "cannot read 'lots' as a count"),
]

TRAIN_BASE = ["--model", "nano", "--seq-len", "32", "--batch-size", "4", "--max-steps", "2", "--num-samples", "0",
              "--no-progress", "--device", "cpu"]


def _fill(args: list[str], files: dict[str, Path]) -> list[str]:
    """``"{good}"`` -> the path of the ``good`` fixture file."""
    return [arg.format(**files) for arg in args]


def _assert_one_line(capsys, command: str, returned: int, phrase: str) -> None:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert returned == 2, captured.err
    assert lines and lines[-1].startswith(f"minillama {command}: error: "), captured.err
    assert phrase in lines[-1], lines[-1]
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("args, phrase", GENERATE)
def test_generate_bad_options(files, capsys, args, phrase):
    returned = main(["generate", str(files["good"]), "--max-new-tokens", "4", *_fill(args, files)])
    _assert_one_line(capsys, "generate", returned, phrase)


@pytest.mark.parametrize("folder, phrase", CHECKPOINTS)
def test_generate_bad_checkpoints(files, capsys, folder, phrase):
    returned = main(["generate", _fill([folder], files)[0], "--max-new-tokens", "4", "--device", "cpu"])
    _assert_one_line(capsys, "generate", returned, phrase)


@pytest.mark.parametrize("args, phrase", TRAIN)
def test_train_bad_inputs(files, capsys, monkeypatch, args, phrase):
    monkeypatch.setenv("MINILLAMA_CACHE", str(files["root"] / "cache"))
    monkeypatch.chdir(files["root"])  # a default run folder lands in the temporary folder
    returned = main(["train", *TRAIN_BASE, "--corpus", str(files["corpus_txt"]), *_fill(args, files)])
    _assert_one_line(capsys, "train", returned, phrase)


@pytest.mark.parametrize("args, phrase", PLAN)
def test_plan_bad_inputs(capsys, args, phrase):
    _assert_one_line(capsys, "plan", main(["plan", *args]), phrase)


def test_generate_runs_on_what_train_writes(files, capsys, monkeypatch, tmp_path):
    """A run folder resolves to its latest (or best) checkpoint; no --prompt starts a document; save_hf loads."""
    monkeypatch.setenv("MINILLAMA_CACHE", str(files["root"] / "cache"))
    run = tmp_path / "run"
    assert main(["train", *TRAIN_BASE, "--corpus", str(files["corpus_txt"]), "--max-steps", "4",
                 "--eval-interval", "2", "--checkpoint-interval", "2", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    for extra in ([], ["--best"]):  # no --prompt: our tokenizer's end-of-text token starts the text
        assert main(["generate", str(run), "--max-new-tokens", "5", "--device", "cpu", *extra]) == 0
    capsys.readouterr()
    from minillama.weights import load_checkpoint

    model = load_checkpoint(run / "checkpoints" / "step_4")
    hf = save_hf(model, tmp_path / "hf", tokenizer=run / "checkpoints" / "step_4" / "tokenizer.model")
    assert (hf / "tokenizer.json").is_file() and not (hf / "tokenizer.model").exists()
    assert main(["generate", str(hf), "--max-new-tokens", "5", "--device", "cpu", "--temperature", "0"]) == 0
    from_hf = capsys.readouterr().out
    assert main(["generate", str(run), "--max-new-tokens", "5", "--device", "cpu", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == from_hf  # the same model and tokenizer, greedy: the same text


def test_debug_shows_the_traceback_before_or_after_the_command(capsys):
    from minillama.errors import UserError

    for argv in (["--debug", "plan", "--seq", "0"], ["plan", "--seq", "0", "--debug"]):
        with pytest.raises(UserError):
            main(argv)


@pytest.mark.parametrize("argv, phrase", [
    (["train", "--model", "nano", "--threads", "100000", "--no-progress"], "far more than the"),
    (["generate", "{root}/missing"], "does not exist"),
])
def test_the_terminal_sees_one_line(files, argv, phrase):
    """As a user sees it: a real process, its whole stderr."""
    env = {**os.environ, "MINILLAMA_CACHE": str(files["root"] / "cache")}
    result = subprocess.run([sys.executable, "-m", "minillama", *_fill(argv, files)], capture_output=True,
                            text=True, env=env, timeout=120, cwd=files["root"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and phrase in result.stderr, result.stderr
    assert json.dumps(result.stderr).count("Traceback") == 0


@pytest.mark.parametrize("damage", ["model.safetensors", "optimizer.pt", "train_state.pt", "another model"])
def test_train_resume_of_a_damaged_checkpoint(files, capsys, monkeypatch, tmp_path, damage):
    monkeypatch.setenv("MINILLAMA_CACHE", str(files["root"] / "cache"))
    run = tmp_path / "run"
    assert main(["train", *TRAIN_BASE, "--corpus", str(files["corpus_txt"]), "--run-dir", str(run)]) == 0
    checkpoint = run / "checkpoints" / "step_2"
    if damage == "another model":
        save_checkpoint(Llama(get_preset("nano", dim=128)), checkpoint)
    else:
        data = (checkpoint / damage).read_bytes()
        (checkpoint / damage).write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    returned = main(["train", "--resume", str(run), "--max-steps", "4"])
    _assert_one_line(capsys, "train", returned, f"cannot resume from {checkpoint}")
