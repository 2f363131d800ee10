"""minillama.data.loader: windows, the train/val split, determinism, resume and rank sharding, checked by counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minillama.data.loader import TrainLoader, eval_batches, eval_windows, split_tokens

N_TOKENS = 5_003


@pytest.fixture
def tokens() -> np.ndarray:
    # Token i is i itself, so a batch tells exactly which positions it came from.
    return np.arange(N_TOKENS, dtype=np.uint32)


def _positions(batch: torch.Tensor) -> set[int]:
    return set(batch.flatten().tolist())


def test_split_is_a_head_and_a_tail(tokens):
    train, val = split_tokens(tokens, 0.1)
    assert len(val) == round(0.1 * N_TOKENS) and len(train) + len(val) == N_TOKENS
    assert train[-1] + 1 == val[0]  # contiguous, nothing lost, nothing shared
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_tokens(tokens, 1.0)


def test_no_window_crosses_the_split(tokens):
    train, val = split_tokens(tokens, 0.2)
    boundary = int(val[0])
    loader = TrainLoader(train, batch_size=4, seq_len=16, seed=0)
    seen_train: set[int] = set()
    for _ in range(3 * loader.batches_per_epoch):
        inputs, targets = next(loader)
        seen_train |= _positions(inputs) | _positions(targets)
    seen_val: set[int] = set()
    for inputs, targets in eval_batches(val, batch_size=4, seq_len=16):
        seen_val |= _positions(inputs) | _positions(targets)
    assert max(seen_train) < boundary <= min(seen_val)


def test_shapes_dtype_and_shift(tokens):
    loader = TrainLoader(tokens, batch_size=3, seq_len=10, seed=1)
    inputs, targets = next(loader)
    assert inputs.shape == targets.shape == (3, 10)
    assert inputs.dtype == targets.dtype == torch.int64
    assert torch.equal(targets, inputs + 1)  # token i is i: the targets are the inputs shifted by one
    # Every window starts on the epoch's phase grid: start = phase + k * seq_len.
    starts = inputs[:, 0].numpy()
    assert len(set(starts % 10)) == 1


def test_same_seed_same_batches_other_seed_other_batches(tokens):
    def first_batches(seed):
        loader = TrainLoader(tokens, batch_size=4, seq_len=8, seed=seed)
        return [next(loader)[0] for _ in range(5)]

    a, b, c = first_batches(7), first_batches(7), first_batches(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_an_epoch_serves_each_window_once_and_epochs_differ(tokens):
    loader = TrainLoader(tokens, batch_size=5, seq_len=8, seed=3)
    epochs = []
    for _ in range(2):
        starts = [next(loader)[0][:, 0] for _ in range(loader.batches_per_epoch)]
        epochs.append(torch.cat(starts).tolist())
    for starts in epochs:
        assert len(starts) == len(set(starts))  # without replacement
        assert len(starts) == loader.batches_per_epoch * 5
    assert epochs[0] != epochs[1]


def test_state_dict_resumes_the_exact_sequence(tokens):
    loader = TrainLoader(tokens, batch_size=4, seq_len=8, seed=5)
    n = loader.batches_per_epoch + 7  # cross an epoch boundary
    reference = [next(loader)[0] for _ in range(n)]
    first = TrainLoader(tokens, batch_size=4, seq_len=8, seed=5)
    for _ in range(n // 2):
        next(first)
    second = TrainLoader(tokens, batch_size=4, seq_len=8, seed=5)
    second.load_state_dict(first.state_dict())
    resumed = [next(second)[0] for _ in range(n - n // 2)]
    assert all(torch.equal(x, y) for x, y in zip(reference[n // 2 :], resumed, strict=True))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_each_global_batch_exactly(tokens, world_size):
    """W ranks with batch B see disjoint windows whose union is the global batch of one process with batch W*B,
    so over an epoch the ranks together cover every window exactly once."""
    single = TrainLoader(tokens, batch_size=2 * world_size, seq_len=8, seed=11)
    ranks = [TrainLoader(tokens, batch_size=2, seq_len=8, seed=11, rank=r, world_size=world_size)
             for r in range(world_size)]
    assert ranks[0].batches_per_epoch == single.batches_per_epoch
    all_starts = []
    for _ in range(single.batches_per_epoch):
        expected = next(single)[0][:, 0].tolist()
        per_rank = [next(loader)[0][:, 0].tolist() for loader in ranks]
        assert sum(per_rank, []) == expected
        all_starts += expected
    assert len(all_starts) == len(set(all_starts))
    assert single.epoch == 1 and all(loader.epoch == 1 for loader in ranks)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_sweep_predicts_every_token_once(tokens, world_size):
    seq_len = 16
    predicted: list[int] = []
    for rank in range(world_size):
        for inputs, targets in eval_batches(tokens, batch_size=4, seq_len=seq_len, rank=rank, world_size=world_size):
            assert inputs.shape[1] == seq_len and inputs.shape[0] <= 4
            predicted += targets.flatten().tolist()
    n_windows = (N_TOKENS - 1) // seq_len
    assert sorted(predicted) == list(range(1, n_windows * seq_len + 1))  # each target once, none twice


def test_eval_sweep_is_deterministic_and_can_be_capped(tokens):
    a = [x for x, _ in eval_batches(tokens, 4, 16)]
    b = [x for x, _ in eval_batches(tokens, 4, 16)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert len(list(eval_batches(tokens, 4, 16, max_batches=2))) == 2
    assert eval_windows(21, 4, rank=1, world_size=2).tolist() == [4, 12]


def test_too_little_data_is_a_clear_error():
    with pytest.raises(ValueError, match="too few"):
        TrainLoader(np.arange(50), batch_size=8, seq_len=16)
    with pytest.raises(ValueError, match="too few"):
        list(eval_batches(np.arange(10), 4, 16))
    with pytest.raises(ValueError, match="rank"):
        TrainLoader(np.arange(500), batch_size=2, seq_len=8, rank=2, world_size=2)
