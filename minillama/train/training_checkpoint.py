"""Training checkpoints: everything needed to continue a run exactly, written so that a crash never corrupts one.

``RUN/checkpoints/step_N/`` holds ``model.safetensors`` + ``config.json`` + ``tokenizer.model`` (our model format:
``minillama generate`` reads any checkpoint), ``optimizer.pt``, ``train_state.pt`` (step, data position, guard,
loss scaler, every random generator) and ``meta.json`` (step, val loss, time). The folder is written under a
temporary name and renamed to ``step_N`` in one ``os.replace``: after a crash a checkpoint exists whole or not at
all. After each save the newest ``keep_last`` are kept, plus the best by validation loss. FSDP's sharded variant
(:mod:`minillama.parallel.sharded_checkpoint`) provides the same ``save``/``load``/``latest``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pickle
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minillama.atomic import atomic_write, fsync_dir
from minillama.errors import as_user_error, is_disk_full
from minillama.model import Llama
from minillama.weights import save_checkpoint

# Fault injection for the crash test: seconds to sleep after the files are written and before the rename.
PAUSE_BEFORE_RENAME_ENV = "MINILLAMA_CHECKPOINT_PAUSE_BEFORE_RENAME"
STEP_PREFIX = "step_"
DISK_NEARLY_FULL = 1 << 20  # bytes free under which a failed write is taken for a full disk


def publish(tmp: Path, final: Path) -> None:
    """Move a fully written checkpoint folder ``tmp`` to ``final`` with renames only, then fsync the parent.

    Re-saving a step (a resumed run) moves the old folder aside first, so at every instant ``final`` is either the
    old complete checkpoint or the new complete one, never a mixture.
    """
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def removed_on_failure(folder: Path):
    """Delete ``folder`` if the block fails (a full disk, an exception), then let the error through.

    ``torch.save`` reports a full disk as ``RuntimeError: ... unexpected pos``: when the disk is (nearly) full at
    that moment, the error is re-raised as the ``OSError(ENOSPC)`` it is, which the CLI explains in one line.
    """
    try:
        yield
    except BaseException as error:
        full = isinstance(error, Exception) and (is_disk_full(error)
                                                 or shutil.disk_usage(folder).free < DISK_NEARLY_FULL)
        shutil.rmtree(folder, ignore_errors=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder.parent)) from error
        raise


# --- random number generators --------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a run may touch, as plain types and tensors (safe to unpickle
    with ``torch.load(weights_only=True)``)."""
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"bit_generator": numpy_state["bit_generator"], "key": numpy_state["state"]["key"].tolist(),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if hasattr(torch, "mps") and torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state` (generators of devices absent here are skipped)."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    saved = state["numpy"]
    np.random.set_state({"bit_generator": saved["bit_generator"], "has_gauss": saved["has_gauss"],
                         "gauss": saved["gauss"],
                         "state": {"key": np.array(saved["key"], dtype=np.uint32), "pos": saved["pos"]}})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and hasattr(torch, "mps") and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


# --- the trainer's state --------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """The counters of a run that a checkpoint restores besides the weights, the optimizer and the data position."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    """Training wall time over all sessions of the run (s)."""
    best_val_loss: float = math.inf
    saved_step: int | None = None
    """Step of the last checkpoint written or resumed by this process."""


def capture_train_state(state: TrainState, loader, guard, grad_scaler, config, data_world_size: int = 1
                        ) -> dict[str, Any]:
    """Everything besides weights and optimizer that the next step depends on, as ``train_state.pt`` holds it."""
    return {
        "step": state.step, "tokens_seen": state.tokens, "elapsed": state.elapsed,
        "best_val_loss": state.best_val_loss, "loader": loader.state_dict(),
        "scheduler": {"step": state.step, "schedule": config.schedule},  # the schedule is a function of the step
        "guard": guard.state_dict(),
        "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None,
        "rng": rng_state(), "config": config.to_toml(), "data_world_size": data_world_size,
    }


def restore_train_state(saved: dict[str, Any], state: TrainState, loader, guard, grad_scaler,
                        checkpoint_dir: Path | None = None) -> None:
    """The inverse of :func:`capture_train_state`, into the live objects of a run. ``checkpoint_dir`` (the folder
    of the checkpoint resumed) places the guard's "last good" checkpoint there, since run folders can move."""
    state.step, state.tokens = int(saved["step"]), int(saved["tokens_seen"])
    state.elapsed, state.best_val_loss = float(saved["elapsed"]), float(saved["best_val_loss"])
    state.saved_step = state.step
    loader.load_state_dict(saved["loader"])
    guard.load_state_dict(saved["guard"], checkpoints=checkpoint_dir)
    if grad_scaler is not None and saved["grad_scaler"] is not None:
        grad_scaler.load_state_dict(saved["grad_scaler"])
    set_rng_state(saved["rng"])


# --- the checkpointer ------------------------------------------------------------------------------------------------


def require_llama(model: torch.nn.Module) -> None:
    """A checkpoint holds a minillama ``Llama`` (its config and Meta's parameter names): say so for anything else."""
    if not isinstance(model, Llama):
        raise TypeError(f"checkpoints hold a minillama.model.Llama, got {type(model).__name__}: pass the bare model "
                        f"(the trainer's .model), not a wrapper such as DDP (.module) or torch.compile (._orig_mod)")


def step_of(path: Path) -> int:
    """``RUN/checkpoints/step_120`` -> 120."""
    return int(Path(path).name[len(STEP_PREFIX):])


class Checkpointer:
    """Saves and loads training checkpoints in ``directory`` (usually ``RUN/checkpoints``), one writer per run."""

    def __init__(self, directory: str | Path, keep_last: int = 2, keep_best: bool = True) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last, self.keep_best = keep_last, keep_best
        self.protected: str | None = None  # a checkpoint retention keeps too (the guard's last good one)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders are never listed)."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir()
                 if p.is_dir() and p.name.startswith(STEP_PREFIX) and p.name[len(STEP_PREFIX):].isdigit()]
        return sorted(found, key=step_of)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or ``None``."""
        found = self.checkpoints()
        return found[-1] if found else None

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_state: dict[str, Any],
             *, tokenizer_file: str | Path | None = None, val_loss: float | None = None) -> Path:
        """Write checkpoint ``step_{step}`` atomically and prune old ones; returns its path.

        ``model`` is the bare ``Llama`` (not a DDP/compiled wrapper); ``train_state`` is a dict of tensors and plain
        Python values (the trainer's step, data position, RNG states, ...).
        """
        require_llama(model)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()
        final = self.directory / f"{STEP_PREFIX}{step}"
        tmp = self.directory / f".tmp-{final.name}-{os.getpid()}"
        tmp.mkdir()
        with removed_on_failure(tmp):  # a full disk leaves no half-written folder behind
            save_checkpoint(model, tmp, tokenizer_file=tokenizer_file)
            if tokenizer_file is not None and Path(f"{tokenizer_file}.json").exists():  # pattern + special tokens
                shutil.copyfile(f"{tokenizer_file}.json", tmp / "tokenizer.model.json")
            atomic_write(tmp / "optimizer.pt", lambda file: torch.save(optimizer.state_dict(), file))
            atomic_write(tmp / "train_state.pt", lambda file: torch.save(train_state, file))
            meta = {"step": step, "val_loss": val_loss, "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}
            atomic_write(tmp / "meta.json", json.dumps(meta, indent=2) + "\n")
        pause = float(os.environ.get(PAUSE_BEFORE_RENAME_ENV, "0") or 0)
        if pause > 0:
            time.sleep(pause)
        publish(tmp, final)
        self._prune()
        return final

    def load(self, path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
             ) -> dict[str, Any]:
        """Load weights into ``model`` and state into ``optimizer``; return the saved ``train_state``."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        require_llama(model)
        path = Path(path)
        device = next(model.parameters()).device
        # a truncated, damaged or foreign file is the user's to fix: one line that names it, not a traceback
        with as_user_error(ValueError, OSError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError,
                           prefix=f"cannot resume from {path} (truncated, damaged or another model's?): "):
            state_dict = load_file(str(path / "model.safetensors"), device=str(device))
            model.load_state_dict(state_dict)
            if optimizer is not None:
                optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
            return torch.load(path / "train_state.pt", map_location="cpu", weights_only=True)

    def _remove_temporaries(self) -> None:
        self.remove_leftovers()

    def remove_leftovers(self) -> None:
        """Delete the temporary folders of an interrupted save; a checkpoint caught moved aside by
        :func:`publish` (``.old-step_N-PID`` with no ``step_N``) is put back instead."""
        if not self.directory.is_dir():
            return
        for stale in self.directory.glob(".old-*"):
            final = self.directory / stale.name[len(".old-"):].rsplit("-", 1)[0]
            if final.exists():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.replace(stale, final)
        for stale in self.directory.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def _prune(self) -> None:
        found = self.checkpoints()
        protected = Path(self.protected).name if self.protected else None
        keep = set(found[-self.keep_last:]) | {p for p in found if p.name == protected}
        if self.keep_best:  # among checkpoints evaluated at their own step, with a finite loss
            scored = [(meta["val_loss"], p) for p in found
                      if isinstance((meta := _read_meta(p)).get("val_loss"), (int, float))
                      and math.isfinite(meta["val_loss"])]
            if scored:
                keep.add(min(scored, key=lambda item: (item[0], -step_of(item[1])))[1])
        for path in found:
            if path not in keep:
                shutil.rmtree(path)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from what a user may pass to ``--resume``: the checkpoint itself, a run folder
    (its latest checkpoint) or a run's ``checkpoints`` folder."""
    path = Path(path).expanduser()
    if (path / "train_state.pt").is_file():
        return path
    for directory in (path / "checkpoints", path):
        latest = Checkpointer(directory).latest()
        if latest is not None:
            return latest
    if not path.exists():
        raise FileNotFoundError(f"cannot resume from {path}: it does not exist")
    raise FileNotFoundError(f"cannot resume from {path}: it is neither a checkpoint (no train_state.pt) nor a run "
                            f"folder with checkpoints/step_N inside")
