"""Evaluate a model on a task: score every item, pick an answer under each metric, summarise with intervals.

:func:`evaluate_task` is what ``minillama eval`` and the chapter's recording call; it returns one record per item
(the prompt's log-likelihoods and each metric's pick) and a summary (each metric's accuracy and its 95% bootstrap
interval, and chance, the accuracy of guessing).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from minillama.evaluate.noise import bootstrap_interval
from minillama.evaluate.scoring import encode_pair, predictions, score_continuations
from minillama.evaluate.tasks import Item, Task, fewshot_context


def check_tokenizer(model: torch.nn.Module, tokenizer) -> None:
    """Refuse a tokenizer whose ids the model has no embedding for: its scores would be silently meaningless."""
    if tokenizer.n_vocab > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.n_vocab:,} tokens but the model's vocabulary is "
                         f"{model.config.vocab_size:,}: this is not the model's tokenizer (pass the checkpoint's "
                         f"tokenizer.model)")


def score_item(model: torch.nn.Module, tokenizer, item: Item, context: str, target_delimiter: str = " ",
               unconditional: bool = True) -> dict:
    """One item's record: each choice's log-likelihood given ``context`` (and alone, for ``acc_mutual_info``),
    its token count, and each metric's pick and correctness."""
    continuations = [target_delimiter + choice for choice in item.choices]
    pairs = [encode_pair(tokenizer, context, continuation) for continuation in continuations]
    context_ids = pairs[0][0]  # the same for every choice: the context is encoded alone
    scores = score_continuations(model, context_ids, [ids for _, ids in pairs])
    record = {"id": item.id, "gold": item.gold, "n_context_tokens": len(context_ids),
              "logprobs": [s.logprob for s in scores], "n_tokens": [s.n_tokens for s in scores],
              "is_greedy": [s.is_greedy for s in scores]}
    unconditional_lls = None
    if unconditional:
        empty = [encode_pair(tokenizer, "", continuation) for continuation in continuations]
        unconditional_lls = [s.logprob for s in score_continuations(model, empty[0][0], [ids for _, ids in empty])]
        record["unconditional_logprobs"] = unconditional_lls
    picked = predictions(record["logprobs"], item.choices, unconditional_lls)
    record.update({f"pred_{metric}": index for metric, index in picked.items()})
    record.update({metric: float(index == item.gold) for metric, index in picked.items()})
    return record


def summarize(records: Sequence[dict], n_choices: Sequence[int], seed: int = 0) -> dict:
    """Each metric's accuracy with its 95% bootstrap interval, and the accuracy of guessing (chance)."""
    summary: dict = {"n_items": len(records), "chance": float(np.mean([1 / k for k in n_choices]))}
    for metric in ("acc", "acc_norm", "acc_bytes", "acc_mutual_info"):
        if records and metric in records[0]:
            values = [r[metric] for r in records]
            low, high = bootstrap_interval(values, seed=seed)
            summary[metric] = {"value": float(np.mean(values)), "low": low, "high": high}
    return summary


@torch.no_grad()
def evaluate_task(model: torch.nn.Module, tokenizer, task: Task, shots: int = 0, seed: int = 1234,
                  limit: int | None = None, unconditional: bool = True, progress: bool = False
                  ) -> tuple[list[dict], dict]:
    """Score ``task`` (its first ``limit`` items) with ``shots`` examples drawn by ``seed``: (records, summary)."""
    check_tokenizer(model, tokenizer)
    was_training = model.training
    model.eval()
    items = task.items[:limit] if limit else task.items
    records = []
    for item in tqdm(items, desc=f"{task.name} ({shots}-shot)", unit="item", disable=not progress):
        context = fewshot_context(task, item, shots, seed)
        records.append(score_item(model, tokenizer, item, context, task.target_delimiter, unconditional))
    model.train(was_training)
    summary = {"task": task.name, "shots": shots, "seed": seed,
               **summarize(records, [len(item.choices) for item in items])}
    return records, summary
