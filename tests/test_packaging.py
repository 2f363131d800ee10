"""The distributions a user installs: `python -m build` makes a wheel and an sdist that install in a fresh venv.

Marked slow (a fresh environment with torch takes a minute or two); part of `make test`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from _fresh_venv import ROOT, build_distributions, run

import minillama

pytestmark = pytest.mark.slow


def test_the_build_warns_of_nothing_deprecated(tmp_path):
    log = build_distributions(tmp_path)
    deprecated = re.compile(r"DeprecationWarning|\bdeprecated\b", flags=re.IGNORECASE)
    warnings = [line for line in log.splitlines() if deprecated.search(line)]
    assert not warnings, "\n".join(warnings)


def test_wheel_holds_the_package_its_data_and_the_license_but_no_tests(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "minillama/cli.py" in names and "minillama/recorded/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "chapters/", "exercises/"))]
    metadata = zipfile.ZipFile(installed.wheel).read(f"minillama-{minillama.__version__}.dist-info/METADATA")
    assert b"License-Expression: MIT" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_info_and_a_five_step_training_run_work_from_the_wheel_in_an_empty_folder(installed, tmp_path):
    env = {**os.environ, "MINILLAMA_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    info = run([installed.bin("minillama"), "info"], timeout=120, cwd=tmp_path, env=env)
    assert minillama.__version__ in info
    run([installed.bin("minillama"), "train", "--max-steps", "5", "--run-dir", "run"], timeout=600, cwd=tmp_path,
        env=env)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps[-1] == 5
    imported_from = run([installed.bin("python"), "-c", "import minillama; print(minillama.__file__)"],
                        timeout=60, cwd=tmp_path, env=env)
    assert str(installed.venv) in imported_from, "the test must exercise the installed wheel, not the clone"


def test_sdist_installs_too(installed, tmp_path):
    run([installed.bin("python"), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
         str(installed.sdist)], timeout=600)
    version = subprocess.run([installed.bin("minillama"), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.stdout.strip() == f"minillama {minillama.__version__}"


def test_one_version_everywhere():
    """The package, the book's footer and substitution, and the changelog's newest release agree."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["parse"]["myst_substitutions"]["version"] == minillama.__version__
    assert f"minillama {minillama.__version__}" in config["html"]["extra_footer"]
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    newest = re.search(r"^## \[?(\d+\.\d+\.\d+[^\]\s]*)", changelog, flags=re.MULTILINE).group(1)
    assert newest == minillama.__version__
    assert Path(ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
