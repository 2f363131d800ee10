"""The ``minillama`` command: help, version and ``info`` run as a user would run them."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

import minillama
from minillama.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minillama", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    result = _run("--help")
    assert result.returncode == 0
    assert "info" in result.stdout


def test_version():
    assert _run("--version").stdout.strip() == f"minillama {minillama.__version__}"


def test_info_json_reports_this_machine(capsys):
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert report["devices"][-1]["device"] == "cpu"
    assert report["best"] == ("cuda:0" if torch.cuda.is_available() else report["devices"][0]["device"])
    assert report["torch_threads"] == torch.get_num_threads()


def test_info_text():
    result = _run("info")
    assert result.returncode == 0, result.stderr
    assert "best device" in result.stdout and "torch" in result.stdout


def test_unknown_command_is_a_clear_error():
    result = _run("fly")
    assert result.returncode == 2
    assert "invalid choice: 'fly'" in result.stderr
