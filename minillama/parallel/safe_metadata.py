"""Read a sharded checkpoint's ``.metadata`` without running code from it.

``torch.distributed.checkpoint`` stores the index of a sharded checkpoint (which piece of which tensor is in which
file) as a pickle and reads it back with ``pickle.load``, which calls whatever the file names: a crafted
``.metadata`` in a folder someone resumes from runs any command. :class:`SafeFileSystemReader` reads it through an
unpickler that builds only DCP's own metadata classes, tensor sizes, dtypes and paths, and refuses everything else;
it also refuses shard file names that would leave the checkpoint folder (``../``, absolute paths).
"""

from __future__ import annotations

import pathlib
import pickle
from pathlib import Path, PurePath
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from minillama.errors import UserError

_METADATA_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
_PATH_CLASSES = {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"}


class _MetadataUnpickler(pickle.Unpickler):
    """An unpickler that can build a DCP ``Metadata`` and nothing else."""

    def __init__(self, file, source: Path) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if module in _METADATA_MODULES:
            found = getattr(__import__(module, fromlist=[name]), name, None)
            if isinstance(found, type) and found.__module__ == module:  # a class defined there, not an import
                return found
        elif module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            return getattr(torch, name)
        elif (module, name) == ("torch.serialization", "_get_layout"):  # a layout by name (torch.strided)
            return torch.serialization._get_layout
        elif module == "pathlib" and name in _PATH_CLASSES:
            return getattr(pathlib, name)
        raise UserError(f"{self.source} is not a checkpoint's metadata: it asks to run {module}.{name}, which a "
                        f"checkpoint never does; it was not loaded (do not resume from a folder you do not trust)")


def read_metadata(path: str | Path) -> Metadata:
    """The ``Metadata`` in the file ``path``, read safely and checked: every shard lies in the same folder."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            metadata = _MetadataUnpickler(f, path).load()
    except UserError:
        raise
    except Exception as error:  # truncated or garbage
        raise UserError(f"{path} is not a readable checkpoint metadata file ({type(error).__name__}: {error})"
                        ) from None
    if not isinstance(metadata, Metadata):
        raise UserError(f"{path} holds a {type(metadata).__name__}, not a checkpoint's metadata")
    for info in (metadata.storage_data or {}).values():
        relative = PurePath(str(getattr(info, "relative_path", "")))
        if relative.is_absolute() or len(relative.parts) != 1 or relative.name in ("", ".", ".."):
            raise UserError(f"{path} names a shard outside its folder ({str(relative)!r}); it was not loaded")
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """DCP's ``FileSystemReader`` with :func:`read_metadata` in place of ``pickle.load``."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        metadata = read_metadata(Path(self.path) / ".metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata
