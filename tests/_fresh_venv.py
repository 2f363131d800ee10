"""Build minillama's wheel and install it in a virtual environment of its own, as a new user would.

Shared by the packaging test and the standalone-chapter test. The environment gets the pinned CPU torch first
(``MINILLAMA_TEST_TORCH``, default ``torch==2.13.0``, the same pin as the Makefile), then the wheel with the extras
asked for; pip's cache makes a second build fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def fresh_install(folder: Path, extras: str = "") -> FreshInstall:
    """Build the distributions and install the wheel (with ``extras``, e.g. ``"[book-chapters]"``) in a new venv."""
    dist, venv = folder / "dist", folder / "venv"
    build_distributions(dist)
    run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    install = FreshInstall(dist, venv)
    run([install.bin("python"), "-m", "pip", "install", "-q", *TORCH.split()], timeout=900)
    run([install.bin("python"), "-m", "pip", "install", "-q", f"{install.wheel}{extras}"], timeout=900)
    return install
