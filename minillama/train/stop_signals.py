"""Stop a run cleanly on Ctrl-C, ``SIGTERM`` (SLURM preemption, ``kill``) or ``SIGHUP`` (a closed ssh session).

A signal arrives in the middle of whatever the process is doing, often half-way through an optimizer step. Saving
there would store a state no uninterrupted run ever had, so the handler only raises a flag; the training loop looks
at it after each step, saves a checkpoint at that step boundary and returns, and ``--resume`` continues with the
very losses the uninterrupted run would have had. A second Ctrl-C stops at once (the last checkpoint stays). After
a hang-up the terminal is gone, so output to it is sent to ``/dev/null`` instead of failing the save.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopRequest:
    """The flag: ``signal_number`` of the first stop signal received (``None`` while none has come)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number else ""

    def _handle(self, number: int, frame) -> None:
        if number == getattr(signal, "SIGHUP", None):
            _detach_from_terminal()
        if self.signal_number is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user means now
        if self.signal_number is None:
            self.signal_number = number


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[StopRequest]:
    """Within the block, stop signals set the returned flag instead of interrupting (main thread only: elsewhere,
    such as a thread of a web app, signals cannot be handled and the flag just stays down)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.signal(number, request._handle) for number in STOP_SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _detach_from_terminal() -> None:
    """Point stdout and stderr at /dev/null if they were a terminal (which has hung up), as ``nohup`` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                os.dup2(devnull, fd)
    os.close(devnull)
