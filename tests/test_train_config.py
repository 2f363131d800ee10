"""TrainConfig: TOML round trip, precedence defaults < file < flags, and clear errors for mistakes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from minillama.train.config import TrainConfig, add_config_arguments, config_from_args

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_config_arguments(parser)
    return parser.parse_args(list(argv))


def test_toml_round_trip(tmp_path):
    config = TrainConfig(model="nano", lr=3e-4, compile=True, sample_prompt='say "hi"\n', eps=1e-10)
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    assert TrainConfig.from_toml(path) == config


def test_tables_are_only_for_the_eye(tmp_path):
    path = tmp_path / "grouped.toml"
    path.write_text('[optimization]\nlr = 1e-3\nmax_steps = 50\n\n[hardware]\ndevice = "cpu"\n')
    config = TrainConfig.from_toml(path)
    assert (config.lr, config.max_steps, config.device) == (1e-3, 50, "cpu")


def test_precedence_defaults_file_flags(tmp_path):
    path = tmp_path / "file.toml"
    path.write_text("max_steps = 50\nlr = 0.01\n")
    config = config_from_args(_parse("--lr", "0.5", "--no-progress"), path)
    assert config.max_steps == 50  # from the file
    assert config.lr == 0.5  # the flag wins over the file
    assert config.progress is False
    assert config.seq_len == TrainConfig().seq_len  # untouched: the default
    assert config_from_args(_parse()) == TrainConfig()


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("warmup_step = 10\n")
    with pytest.raises(ValueError, match=r"unknown key.*'warmup_step'.*did you mean 'warmup_steps'"):
        TrainConfig.from_toml(path)
    with pytest.raises(SystemExit):  # argparse: "unrecognized arguments"
        _parse("--warmup-step", "10")


def test_bad_values_are_errors(tmp_path):
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr must be float"):
        TrainConfig(lr="fast")
    with pytest.raises(ValueError, match="compile must be bool"):
        TrainConfig(compile=1)
    path = tmp_path / "broken.toml"
    path.write_text("lr = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        TrainConfig.from_toml(path)
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)  # TOML's 1 means 1.0 here


def test_the_default_config_file_is_the_default_run():
    assert TrainConfig.from_toml(CONFIGS / "tiny.toml") == TrainConfig()


@pytest.mark.parametrize("name", ["nano.toml", "tiny.toml", "small-100m.toml"])
def test_single_device_configs_parse(name):  # the multi-GPU configs of chapter 9 add their own keys
    TrainConfig.from_toml(CONFIGS / name)
