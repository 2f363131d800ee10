"""The recorded runs the chapters plot ship as package data (``minillama/recorded/``), read with importlib.resources,
so a chapter runs wherever the package is installed, not only inside the clone."""

import json
import math
from importlib.resources import files
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from minillama.config import ModelConfig
from minillama.numpy_llama import bits_per_byte

RECORDED = files("minillama") / "recorded"


def test_numpy_run_is_package_data_and_consistent():
    run = json.loads((RECORDED / "numpy_llama_run.json").read_text())
    # bits per byte = nats per token / bytes per token / ln 2, recomputed by hand
    assert run["final_val_bits_per_byte"] == pytest.approx(
        run["final_val_loss"] / run["bytes_per_token"] / math.log(2), rel=1e-12)
    assert run["final_val_bits_per_byte"] == pytest.approx(2.164, abs=5e-4)  # the figure chapter 5 quotes
    assert run["final_val_bits_per_byte"] == pytest.approx(
        bits_per_byte(run["final_val_loss"], 1, run["bytes_per_token"]), rel=1e-12)
    assert run["history"][-1]["val_loss"] == run["final_val_loss"]
    assert run["history"][-1]["step"] == run["train_config"]["steps"]
    fields = {f for f in ModelConfig.__dataclass_fields__ if ModelConfig.__dataclass_fields__[f].init}
    config = ModelConfig(**{k: v for k, v in run["model_config"].items() if k in fields})
    assert config.num_params() == run["num_params"]


def test_pyproject_ships_the_recorded_files():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["minillama.recorded"]
    shipped = {p.name for pattern in patterns for p in Path(str(RECORDED)).glob(pattern)}
    assert {p.name for p in RECORDED.iterdir() if p.name.endswith(".json")} <= shipped
