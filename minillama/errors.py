"""The one exception for a person's mistake: a bad flag, a missing file, a config that cannot work.

Every command raises :class:`UserError` (or a subclass) for input it refuses, with a message that says what was
wrong and what to do. The CLI prints that message on one line and exits with status 2, as argparse does for a bad
flag; anything else is a bug in minillama and keeps its traceback. It subclasses ``ValueError`` so that library
callers who catch ``ValueError`` keep working. :func:`as_user_error` turns the library's own ``ValueError`` /
``OSError`` about a user's input (a corrupt file, a missing folder) into one, around the lines that read that input.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator


class UserError(ValueError):
    """Input a person gave that minillama refuses; the message is shown as is, without a traceback."""


DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the disk or the quota is full.

    torch and safetensors report a failed write as ``RuntimeError`` / ``SafetensorError`` with the OS message in
    the text, so the text is checked too.
    """
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return True
        text = str(error)
        if "No space left on device" in text or "StorageFull" in text or "Disk quota exceeded" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def as_user_error(*types: type[BaseException], prefix: str = "") -> Iterator[None]:
    """Re-raise the listed exception types as :class:`UserError` (``prefix`` + the original message).

    >>> with as_user_error(FileNotFoundError):
    ...     open("/no/such/file")
    Traceback (most recent call last):
    minillama.errors.UserError: [Errno 2] No such file or directory: '/no/such/file'
    """
    try:
        yield
    except UserError:
        raise
    except types as error:
        if isinstance(error, OSError) and is_disk_full(error):
            raise
        message = str(error) if not isinstance(error, OSError) or not error.filename else (
            f"{error.filename}: {error.strerror}")
        raise UserError(f"{prefix}{message}") from error
