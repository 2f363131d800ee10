"""Sharded training checkpoints: every rank writes its own shards through ``torch.distributed.checkpoint`` (DCP).

Under FSDP no rank holds the whole model; DCP has each rank write the shards it owns, plus a ``.metadata`` file
that says where each piece of each tensor lives, so a checkpoint written by 64 GPUs loads on 8, or on 1
(*resharding*). The folder ``RUN/checkpoints/step_N/`` has the single-device checkpointer's three methods, so the
trainer does not know which one it has: ``.metadata`` + ``__R_0.distcp`` (weights and AdamW's state),
``train_state.pt`` (rank 0's, with every rank's random generators), ``config.json`` + ``tokenizer.model``
(:func:`consolidate` makes a single-file checkpoint of it) and ``meta.json``. All ranks write into one temporary
folder, wait at a barrier, and rank 0 renames it: a crash of any rank leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from minillama.atomic import fsync_dir
from minillama.config import ModelConfig
from minillama.model import Llama
from minillama.parallel.distributed import barrier, gather_objects, get_rank, get_world_size
from minillama.parallel.safe_metadata import SafeFileSystemReader, read_metadata
from minillama.train.training_checkpoint import STEP_PREFIX, Checkpointer, publish, require_llama
from minillama.weights import save_checkpoint

METADATA_FILE = ".metadata"  # written by DCP; its presence is what makes a folder a sharded checkpoint


def is_sharded_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint written by :class:`ShardedCheckpointer` (DCP's ``.metadata`` is there)."""
    return (Path(path) / METADATA_FILE).is_file()


@contextlib.contextmanager
def _one_process_is_fine() -> Iterator[None]:
    """Without a process group DCP reads and writes everything itself, and warns that it "assumes" so: here one
    process is the intent (a single-device run, or :func:`consolidate`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is .*single process")
        yield


def _write_synced(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


class ShardedCheckpointer(Checkpointer):
    """Saves and loads sharded checkpoints in ``directory``; every rank calls :meth:`save` and :meth:`load`.

    Retention (``keep_last`` newest + the best by validation loss) and listing are the single-device
    :class:`~minillama.train.training_checkpoint.Checkpointer` 's, done by rank 0.
    """

    collective = True
    """Every rank must call :meth:`save` (the single-device checkpointer is called by rank 0 only)."""

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_state: dict[str, Any],
             *, tokenizer_file: str | Path | None = None, val_loss: float | None = None) -> Path:
        """Write checkpoint ``step_{step}`` from all ranks and publish it atomically; returns its path on every rank.

        ``model`` is the FSDP-sharded ``Llama`` (the same module ``parallelize`` returned), ``train_state`` this
        rank's trainer state; rank 0's is written, with every rank's random generator states added.
        """
        require_llama(model)
        rank, world_size = get_rank(), get_world_size()
        final = self.directory / f"{STEP_PREFIX}{step}"
        tmp = self.directory / f".tmp-{final.name}-sharded"  # the same name on every rank
        if rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._remove_temporaries()
            tmp.mkdir()
        barrier()  # the folder exists before anyone writes into it

        model_state, optimizer_state = get_state_dict(model, optimizer)
        with _one_process_is_fine():
            dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp)
        rng_per_rank = gather_objects(train_state["rng"])
        if rank == 0:
            self._write_rank0_files(tmp, step, model, {**train_state, "rng_per_rank": rng_per_rank},
                                    tokenizer_file, val_loss, world_size)
        barrier()  # every rank's shards and rank 0's files are on disk

        if rank == 0:
            publish(tmp, final)
            self._prune()
        barrier()  # nobody continues before the checkpoint is published
        return final

    def _write_rank0_files(self, folder: Path, step: int, model: torch.nn.Module, train_state: dict[str, Any],
                           tokenizer_file: str | Path | None, val_loss: float | None, world_size: int) -> None:
        config: ModelConfig = model.config
        _write_synced(folder / "config.json", lambda f: f.write(json.dumps(config.to_dict(), indent=2).encode()))
        if tokenizer_file is not None:
            tokenizer_file = Path(tokenizer_file)
            for source, name in ((tokenizer_file, "tokenizer.model"),
                                 (Path(f"{tokenizer_file}.json"), "tokenizer.model.json")):
                if source.exists():
                    shutil.copyfile(source, folder / name)
        _write_synced(folder / "train_state.pt", lambda f: torch.save(train_state, f))
        meta = {"step": step, "val_loss": val_loss, "world_size": world_size, "format": "torch.distributed.checkpoint",
                "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_synced(folder / "meta.json", lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
        fsync_dir(folder)

    def load(self, path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
             ) -> dict[str, Any]:
        """Load ``path`` into this rank's shards of ``model`` and ``optimizer`` (any number of ranks, any layout the
        checkpoint was written with); return the ``train_state`` with this rank's random generator states."""
        require_llama(model)
        path = Path(path)
        if not is_sharded_checkpoint(path):
            raise ValueError(f"{path} is not a sharded checkpoint (no {METADATA_FILE}); a single-device checkpoint "
                             f"resumes with --parallel ddp or without --parallel")
        read_metadata(path / METADATA_FILE)  # refuses a crafted file with one clear message, before DCP reads it
        if optimizer is None:
            state = {"model": get_model_state_dict(model)}
            with _one_process_is_fine():
                dcp.load(state, storage_reader=SafeFileSystemReader(path))
            set_model_state_dict(model, state["model"])
        else:
            model_state, optimizer_state = get_state_dict(model, optimizer)
            state = {"model": model_state, "optimizer": optimizer_state}
            with _one_process_is_fine():
                dcp.load(state, storage_reader=SafeFileSystemReader(path))
            set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        train_state = torch.load(path / "train_state.pt", map_location="cpu", weights_only=True)
        rng_per_rank = train_state.pop("rng_per_rank", None) or [train_state["rng"]]
        rank = get_rank()
        # Same world size: each rank continues its own random streams. Another world size: the streams of the
        # ranks that no longer exist have no owner, and new ranks start from rank 0's (training draws no random
        # numbers after initialization, so this only matters to code that adds some, such as dropout).
        train_state["rng"] = rng_per_rank[rank] if rank < len(rng_per_rank) else rng_per_rank[0]
        return train_state


def consolidate(checkpoint: str | Path, out: str | Path) -> Path:
    """Turn a sharded checkpoint into our single-device format (``model.safetensors`` + ``config.json`` +
    tokenizer) in ``out``, for ``minillama generate`` and ``minillama.weights.load_checkpoint``.

    Runs in one process without a process group: DCP reads every shard of every weight into a whole model on the
    CPU (so it needs the model's float32 size in memory: 32 GB for 8B). The optimizer state is not read.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if not is_sharded_checkpoint(checkpoint):
        raise ValueError(f"{checkpoint} is not a sharded checkpoint (no {METADATA_FILE})")
    config = ModelConfig.from_dict(json.loads((checkpoint / "config.json").read_text()))
    with torch.device("meta"):
        model = Llama(config)
    model.to_empty(device="cpu")
    state = {"model": model.state_dict()}
    read_metadata(checkpoint / METADATA_FILE)
    with _one_process_is_fine():
        dcp.load(state, storage_reader=SafeFileSystemReader(checkpoint), no_dist=True)
    model.load_state_dict(state["model"])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = checkpoint / "tokenizer.model"
    return save_checkpoint(model, out, tokenizer_file=tokenizer if tokenizer.is_file() else None)
