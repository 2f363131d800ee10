"""Data recorded from real runs that the chapters show: metrics, samples and sweep results.

Shipped inside the package so that a chapter runs from an installed wheel in any folder (Colab included), not only
from a clone. Each file names the command that produced it; read them with :func:`path`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    """The path of the recorded file ``name`` (e.g. ``"tiny_run_metrics.jsonl"``) inside the installed package."""
    resource = files(__name__) / name
    if not resource.is_file():
        raise FileNotFoundError(f"no recorded file {name!r} in minillama.recorded")
    return Path(str(resource))
