"""Validation loss and bits per byte against a hand calculation."""

from __future__ import annotations

import math

import pytest
import torch

from minillama.train.config import check_parallel_options
from minillama.train.evaluate import loss_sums, metrics_from_sums


class Uniform(torch.nn.Module):
    """Logits of zeros: every next token costs ln(vocab) nats."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*tokens.shape, self.vocab)  # (B, T, vocab)


def test_uniform_model_by_hand():
    vocab = 8
    token_bytes = torch.tensor([0, 1, 1, 2, 2, 3, 3, 4])  # bytes spelled by each token id (0: a special token)
    targets = torch.tensor([[1, 2, 3], [4, 5, 6]])
    batches = [(torch.zeros_like(targets), targets), (torch.zeros(1, 3, dtype=torch.long), torch.tensor([[7, 7, 0]]))]
    totals = loss_sums(Uniform(vocab), batches, token_bytes)
    n_tokens, n_bytes = 9, (1 + 1 + 2 + 2 + 3 + 3) + (4 + 4 + 0)
    assert totals.tolist() == pytest.approx([n_tokens * math.log(vocab), n_tokens, n_bytes])
    metrics = metrics_from_sums(totals)
    assert metrics["val_loss"] == pytest.approx(math.log(vocab))
    assert metrics["val_bpb"] == pytest.approx(n_tokens * 3 / n_bytes)  # 3 bits per token over 20 bytes
    assert metrics["val_tokens"] == n_tokens


def test_parallel_rules_that_need_the_world_size():
    check_parallel_options("fsdp", 2, world_size=4)
    with pytest.raises(ValueError, match="2 processes with --parallel none would train 2 identical copies"):
        check_parallel_options("none", 1, world_size=2)
    with pytest.raises(ValueError, match="3 processes cannot form tensor-parallel groups of 2"):
        check_parallel_options("fsdp", 2, world_size=3)
    with pytest.raises(ValueError, match="FSDP with float16"):
        check_parallel_options("fsdp", 1, amp_dtype=torch.float16)
