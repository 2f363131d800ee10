"""Build minillama's wheel and install it in a virtual environment of its own, as a new user would.

Shared by the packaging test and the standalone-chapter test. The environment gets the pinned CPU torch first
(``MINILLAMA_TEST_TORCH``, default ``torch==2.13.0``, the same pin as the Makefile), then the wheel with the extras
asked for; pip's cache makes a second build fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("minillama_sync_install_cell", ROOT / "scripts" / "sync_install_cell.py")
install_cell = importlib.util.module_from_spec(_spec)  # scripts/sync_install_cell.py: the chapters' install line
_spec.loader.exec_module(install_cell)
TORCH = os.environ.get("MINILLAMA_TEST_TORCH", "torch==2.13.0")


@dataclass(frozen=True)
class FreshInstall:
    dist: Path  # the folder holding the built wheel and sdist
    venv: Path

    @property
    def wheel(self) -> Path:
        return next(self.dist.glob("minillama-*.whl"))

    @property
    def sdist(self) -> Path:
        return next(self.dist.glob("minillama-*.tar.gz"))

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def run(command: list[str], timeout: float, cwd: Path | None = None, env: dict | None = None) -> str:
    """Run ``command``; on failure raise with its whole output, so a broken install explains itself."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def build_distributions(dist: Path) -> str:
    """``python -m build`` (isolated, as pip builds for a user): a wheel and an sdist in ``dist``; the build log."""
    return run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], timeout=600)


def chapter_extras() -> str:
    """The union of the extras the chapters' install cells ask for, e.g. ``"[hf,llama3]"``."""
    extras = set()
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        cell = install_cell.first_code_cell(json.loads(path.read_text(encoding="utf-8")))
        match = install_cell.INSTALL_LINE.search("".join(cell["source"]))
        if match and match["extras"]:
            extras |= set(match["extras"].strip("[]").split(","))
    return f"[{','.join(sorted(extras))}]" if extras else ""


def fresh_install(folder: Path, extras: str = "", kernel: bool = False) -> FreshInstall:
    """Build the distributions and install the wheel (with ``extras``, e.g. ``"[hf]"``) in a new venv.

    ``kernel`` adds what runs a notebook (ipykernel, nbclient), as Colab or a reader's Jupyter has it.
    """
    dist, venv = folder / "dist", folder / "venv"
    build_distributions(dist)
    run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    install = FreshInstall(dist, venv)
    run([install.bin("python"), "-m", "pip", "install", "-q", *TORCH.split()], timeout=900)
    jupyter = ["ipykernel", "nbclient"] if kernel else []
    run([install.bin("python"), "-m", "pip", "install", "-q", f"{install.wheel}{extras}", *jupyter], timeout=900)
    return install
