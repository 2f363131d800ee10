"""Batches of token windows from a token array (usually a ``np.memmap`` of a token shard): ``(B, T)`` int64.

A language model trains on windows of ``T + 1`` consecutive tokens: the first ``T`` are the input, the last ``T``
(shifted by one) the targets. Two ways to cut a token stream into windows:

* **training** (:class:`TrainLoader`): an *epoch* is a random permutation of the non-overlapping windows of the
  training tokens, starting at a random phase ``0 <= p < T`` so that window boundaries move from epoch to epoch.
  Every window is seen once per epoch (sampling without replacement), and the order is a pure function of
  ``(seed, epoch)``: the loader's whole state is two integers, which is what makes exact resume cheap.
* **evaluation** (:func:`eval_batches`): a deterministic sweep, window ``k`` starting at ``k * T``, so each
  validation token is predicted exactly once.

Distributed runs (``world_size`` ranks) deal out the same permutation: global batch ``i`` is the ``world_size *
batch_size`` windows ``perm[i*W*B : (i+1)*W*B]`` and rank ``r`` takes its ``r``-th slice of ``B`` windows. The ranks
therefore see disjoint windows that together cover the data exactly once per epoch, and ``W`` ranks with batch ``B``
see the same global batch as one process with batch ``W*B``, which is what lets a DDP run reproduce a single-device
run. The train/validation split is done before any of this (:func:`split_tokens`), so no window crosses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a token stream into a training head and a validation tail of ``round(val_fraction * n)`` tokens.

    The tail, not a random subset, so that validation text is text the model never saw, not windows interleaved
    with training windows from the same scene. Both parts are views (no copy of a memmap).

    >>> train, val = split_tokens(np.arange(10), 0.2)
    >>> train.tolist(), val.tolist()
    ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n_val = round(val_fraction * len(tokens))
    return tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]


def _windows_to_batch(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather ``len(starts)`` windows of ``seq_len + 1`` tokens into inputs and targets, ``(B, T)`` int64 each."""
    offsets = np.arange(seq_len + 1)
    windows = np.asarray(tokens[starts[:, None] + offsets[None, :]], dtype=np.int64)  # (B, T + 1)
    batch = torch.from_numpy(windows)
    return batch[:, :-1], batch[:, 1:]  # (B, T + 1) -> inputs (B, T), targets (B, T)


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":  # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


class TrainLoader:
    """Endless training batches ``(inputs, targets)``, each ``(batch_size, seq_len)`` int64, on ``device``.

    ``state_dict()`` is ``{"epoch", "batch"}`` (the next batch to yield); loading it continues the exact sequence.

    >>> loader = TrainLoader(np.arange(100), batch_size=2, seq_len=8, seed=0)
    >>> x, y = next(loader)
    >>> x.shape, bool((y[:, :-1] == x[:, 1:]).all())
    (torch.Size([2, 8]), True)
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, device: torch.device | str = "cpu") -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device)
        self.epoch, self.batch = 0, 0
        # The fewest windows an epoch can have (phase T - 1) fixes the batches per epoch for every epoch.
        min_windows = (len(tokens) - seq_len) // seq_len
        self.batches_per_epoch = min_windows // (world_size * batch_size)
        if self.batches_per_epoch <= 0:
            raise ValueError(
                f"{len(tokens):,} training tokens are too few for one global batch of {world_size} x {batch_size} "
                f"windows of {seq_len + 1} tokens; use a larger corpus, a smaller batch_size or a smaller seq_len"
            )
        self._epoch_starts: np.ndarray | None = None

    def epoch_starts(self, epoch: int) -> np.ndarray:
        """Start positions of the windows of ``epoch`` in the order they are served (all ranks, all batches)."""
        rng = np.random.default_rng([self.seed, epoch])
        phase = int(rng.integers(self.seq_len))
        n_windows = (len(self.tokens) - 1 - phase) // self.seq_len  # windows of T + 1 tokens that fit
        return phase + self.seq_len * rng.permutation(n_windows)

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._epoch_starts is None:
            self._epoch_starts = self.epoch_starts(self.epoch)
        global_batch = self.world_size * self.batch_size
        first = self.batch * global_batch + self.rank * self.batch_size
        inputs, targets = _windows_to_batch(self.tokens, self._epoch_starts[first : first + self.batch_size],
                                            self.seq_len)
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch, self._epoch_starts = self.epoch + 1, 0, None
        return _to_device(inputs, self.device), _to_device(targets, self.device)

    def state_dict(self) -> dict[str, int]:
        """The data position: the epoch and the index of the next batch in it."""
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch, self._epoch_starts = int(state["epoch"]), int(state["batch"]), None


def eval_windows(n_tokens: int, seq_len: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Start positions of this rank's evaluation windows: ``k * seq_len`` for every ``k = rank (mod world_size)``.

    >>> eval_windows(21, 4).tolist(), eval_windows(21, 4, rank=1, world_size=2).tolist()
    ([0, 4, 8, 12, 16], [4, 12])
    """
    n_windows = (n_tokens - 1) // seq_len
    return seq_len * np.arange(rank, n_windows, world_size)


def eval_batches(tokens: np.ndarray, batch_size: int, seq_len: int, *, rank: int = 0, world_size: int = 1,
                 max_batches: int = 0, device: torch.device | str = "cpu"
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The deterministic evaluation sweep: consecutive windows, this rank's share, the last batch possibly smaller.

    ``max_batches > 0`` stops early (a quick estimate during training); 0 sweeps the whole split.
    """
    starts = eval_windows(len(tokens), seq_len, rank, world_size)
    if len(starts) == 0:
        raise ValueError(f"{len(tokens):,} validation tokens are too few for one window of {seq_len + 1} tokens")
    device = torch.device(device)
    for index, first in enumerate(range(0, len(starts), batch_size)):
        if max_batches and index >= max_batches:
            return
        inputs, targets = _windows_to_batch(tokens, starts[first : first + batch_size], seq_len)
        yield _to_device(inputs, device), _to_device(targets, device)
