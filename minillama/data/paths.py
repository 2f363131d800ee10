"""Where data lives: the download cache and the optional offline mirror.

* ``MINILLAMA_CACHE`` (default ``~/.cache/minillama``) holds downloads, trained tokenizers and token shards.
* ``MINILLAMA_DATA_MIRROR`` names a folder of offline copies (``tinyshakespeare.txt``, ...) that is consulted
  before any download: classrooms without internet, CI machines, and clusters behind a firewall use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder, created on first use."""
    path = Path(os.environ.get("MINILLAMA_CACHE") or Path.home() / ".cache" / "minillama").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirror_dir() -> Path | None:
    """The offline mirror folder named by ``MINILLAMA_DATA_MIRROR``, or ``None`` when unset.

    A mirror that is set but missing is an error rather than silently ignored: a typo there would otherwise send
    a classroom of laptops to the network.
    """
    value = os.environ.get("MINILLAMA_DATA_MIRROR")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"MINILLAMA_DATA_MIRROR={value!r} is not a folder; unset it or point it at one")
    return path


def offline() -> bool:
    """True when ``MINILLAMA_OFFLINE=1``: never touch the network, fail fast with the offline alternatives."""
    return os.environ.get("MINILLAMA_OFFLINE", "").strip().lower() in {"1", "true", "yes"}
