"""Validation loss and bits per byte: the number every run in the book is judged by.

``bpb = sum of losses (nats) / bytes of the predicted tokens / ln 2`` is independent of the tokenizer, so a
byte-level model, a BPE model and chapter 5's numpy run compare on one scale. The sums (not the means) are
returned, so that the ranks of a distributed run can add theirs before dividing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from minillama.train.step import Batch, autocast


@torch.no_grad()
def loss_sums(model: torch.nn.Module, batches: Iterable[Batch], token_bytes: torch.Tensor,
              amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[sum of next-token losses (nats), tokens, bytes of those tokens]`` over ``batches``, in float64.

    ``token_bytes[i]`` is the number of UTF-8 bytes of token id ``i`` (0 for special tokens).
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=token_bytes.device)
    for inputs, targets in batches:
        with autocast(inputs.device, amp_dtype):
            logits = model(inputs)  # (B, T, vocab)
        B, T, V = logits.shape  # batch, time, vocab
        loss = F.cross_entropy(logits.float().view(B * T, V), targets.reshape(B * T), reduction="sum")
        totals += torch.stack([loss.double(), torch.tensor(B * T, dtype=torch.float64, device=totals.device),
                               token_bytes[targets].sum().double()])
    model.train(was_training)
    return totals


def metrics_from_sums(totals: torch.Tensor) -> dict[str, float]:
    """``val_loss`` (nats per token), ``val_bpb`` and ``val_tokens`` from :func:`loss_sums`.

    >>> metrics_from_sums(torch.tensor([2 * math.log(2), 2.0, 4.0], dtype=torch.float64))  # 1 bit/token, 2 bytes/token
    {'val_loss': 0.6931471805599453, 'val_bpb': 0.5, 'val_tokens': 2}
    """
    loss_sum, tokens, n_bytes = totals.tolist()
    return {"val_loss": loss_sum / tokens, "val_bpb": loss_sum / n_bytes / math.log(2), "val_tokens": int(tokens)}
