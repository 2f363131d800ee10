"""Multiple-choice scoring by log-likelihood, with lm-evaluation-harness's conventions and names.

Each answer ``a`` of a question with context ``c`` gets ``log p(a | c)``, the sum of its tokens' log-probabilities;
the prediction is the answer with the highest score, under one of four normalisations, named as the harness
(Gao et al. 2024, ``lm_eval/api/task.py``) names them:

- ``acc``: the sum itself (favours short answers: every token costs probability);
- ``acc_norm``: the sum divided by the answer's length in *characters* (the harness's choice: a length that does
  not depend on the tokenizer; GPT-3 divided by tokens);
- ``acc_bytes``: divided by its UTF-8 bytes (the same as ``acc_norm`` for ASCII answers);
- ``acc_mutual_info``: minus the unconditional ``log p(a)``, scored after the prefix token alone
  (GPT-3's normalisation for ARC, OpenBookQA and RACE: how much the context raised the answer's probability).

Tokenization follows the harness exactly, so that the two agree token for token: trailing whitespace of the context
moves to the answer; context and answer are encoded together and the answer is what follows the context's own
tokens; an empty context becomes the begin-of-text token (or end-of-text where there is none).

The context is shared by every answer: it runs through the model once, its keys and values are copied into a
:class:`~minillama.model.KVCache` row per answer, and the answers run as one padded batch after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKENS = ("<|end_of_text|>", "<|endoftext|>", "<|eot_id|>")
METRICS = ("acc", "acc_norm", "acc_bytes", "acc_mutual_info")


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` as a Hugging Face tokenizer of ours encodes it: begin-of-text first when the tokenizer
    has one (Meta's), special-token strings as their ids."""
    special = getattr(tokenizer, "special_tokens", {})
    bos = [special[BOS_TOKEN]] if BOS_TOKEN in special else []
    return bos + tokenizer.encode(text, allowed_special="all")


def prefix_token(tokenizer) -> int:
    """The token that stands for an empty context: begin-of-text, else end-of-text (the harness's choice)."""
    special = getattr(tokenizer, "special_tokens", {})
    for name in (BOS_TOKEN, *EOS_TOKENS):
        if name in special:
            return special[name]
    raise ValueError("the tokenizer has neither a begin-of-text nor an end-of-text token: an empty context has "
                     "nothing to condition on")


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids, split as the harness splits them.

    Example: ``("Q: 2+2 =", " 4")`` and ``("Q: 2+2 = ", "4")`` give the same ids (the space moves to the answer).
    """
    if not context:
        return [prefix_token(tokenizer)], encode(tokenizer, continuation)[len(encode(tokenizer, "")):]
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole[len(context_ids):]


@dataclass
class Scored:
    """One continuation's score: the summed log-probability and whether greedy decoding would have produced it."""

    logprob: float
    n_tokens: int
    is_greedy: bool


@torch.no_grad()
def score_continuations(model: torch.nn.Module, context_ids: Sequence[int],
                        continuations: Sequence[Sequence[int]]) -> list[Scored]:
    """``log p(continuation | context)`` for each continuation, the context computed once in a shared KV cache.

    Too long for the model? Each pair is cut from the left to ``max_seq_len + 1`` tokens and scored alone, as the
    harness does (the last token is never an input).
    """
    if not context_ids or any(len(c) == 0 for c in continuations):
        raise ValueError("every context and continuation needs at least one token")
    limit = model.config.max_seq_len + 1
    longest = max(len(c) for c in continuations)
    if len(context_ids) + longest > limit:
        if len(continuations) > 1:
            return [score_continuations(model, context_ids, [c])[0] for c in continuations]
        if longest > model.config.max_seq_len:
            raise ValueError(f"a continuation of {longest} tokens does not fit the model's {limit - 1} positions")
        context_ids = context_ids[len(context_ids) + longest - limit:]
    device = next(model.parameters()).device
    K, C, M = len(continuations), len(context_ids), longest  # answers, context tokens, longest answer
    cache = model.make_cache(K, max_seq_len=C + M - 1)
    context = torch.tensor([list(context_ids)], device=device)  # (1, C)
    first = model(context, cache=cache, last_only=True)  # (1, 1, vocab): predicts each answer's first token
    cache.keys[:, 1:, :, :C] = cache.keys[:, :1, :, :C]  # the context's keys and values, one copy per answer
    cache.values[:, 1:, :, :C] = cache.values[:, :1, :, :C]
    answers = torch.zeros(K, M, dtype=torch.long, device=device)  # right-padded with id 0, masked below
    for k, ids in enumerate(continuations):
        answers[k, : len(ids)] = torch.tensor(list(ids), device=device)
    logits = first.expand(K, 1, -1)  # (K, 1, vocab)
    if M > 1:  # the last answer token is never an input
        logits = torch.cat([logits, model(answers[:, :-1], start_pos=C, cache=cache)], dim=1)  # (K, M, vocab)
    logprobs = F.log_softmax(logits.float(), dim=-1)  # (K, M, vocab)
    picked = logprobs.gather(-1, answers[..., None])[..., 0]  # (K, M)
    greedy = logprobs.argmax(-1) == answers  # (K, M)
    scores = []
    for k, ids in enumerate(continuations):
        n = len(ids)
        scores.append(Scored(float(picked[k, :n].double().sum()), n, bool(greedy[k, :n].all())))
    return scores


def predictions(logprobs: Sequence[float], choices: Sequence[str],
                unconditional: Sequence[float] | None = None) -> dict[str, int]:
    """The index each metric picks (ties go to the first answer, as ``np.argmax``).

    Example: log-probs ``[-6.0, -4.0]`` for ``["a long answer", "no"]``: ``acc`` picks 1 (-4 > -6), ``acc_norm``
    picks 0 (-6/13 = -0.46 > -4/2 = -2.0).
    """
    lls = np.asarray(logprobs, dtype=np.float64)
    chars = np.array([len(c) for c in choices], dtype=np.float64)
    n_bytes = np.array([len(c.encode("utf-8")) for c in choices], dtype=np.float64)
    picked = {"acc": int(np.argmax(lls)), "acc_norm": int(np.argmax(lls / chars)),
              "acc_bytes": int(np.argmax(lls / n_bytes))}
    if unconditional is not None:
        picked["acc_mutual_info"] = int(np.argmax(lls - np.asarray(unconditional, dtype=np.float64)))
    return picked
