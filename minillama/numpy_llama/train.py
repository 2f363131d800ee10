"""Training the numpy Llama on a CPU: random batches from a token array, AdamW, warmup + cosine, eval loss.

The loop chapter 7 rebuilds at scale in PyTorch, in its smallest honest form::

    model = Llama(get_preset("tiny", vocab_size=tokenizer.n_vocab))
    history = train(model, train_tokens, val_tokens, TrainConfig(max_steps=300))

Run from the command line it trains a byte-level BPE tokenizer on tinyshakespeare, trains the model and writes the
metrics (loss curves, bits per byte, a sample) to a JSON file; the chapter shows the result of::

    python -m minillama.numpy_llama --preset tiny --vocab-size 512 --max-steps 1000 --batch-size 16 --seq-len 128 \
        --warmup-steps 50 --eval-interval 50 --eval-batches 16 --log-interval 25 \
        --out minillama/recorded/numpy_llama_run.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minillama.autograd import Tensor, manual_seed, no_grad, optim
from minillama.autograd import functional as F
from minillama.config import get_preset

from .model import Llama
from .sample import generate


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of a numpy training run (the model's shape is a separate ``ModelConfig``); the fields share
    their names with chapter 7's :class:`minillama.train.config.TrainConfig`."""

    max_steps: int = 300
    """Number of optimizer steps."""
    batch_size: int = 16
    """Sequences per step."""
    seq_len: int = 128
    """Tokens per sequence (at most the model's ``max_seq_len``)."""
    lr: float = 3e-3
    """Peak learning rate, reached at the end of the warmup."""
    min_lr_ratio: float = 0.1
    """Learning rate at the end of the cosine decay, as a fraction of ``lr``."""
    warmup_steps: int = 30
    """Steps of linear warmup from ``lr / warmup_steps`` to ``lr``."""
    weight_decay: float = 0.1
    """AdamW's decoupled weight decay, applied to the matrices only (not to the norm weights)."""
    beta1: float = 0.9
    """AdamW's first-moment decay."""
    beta2: float = 0.95
    """AdamW's second-moment decay (0.95, as Llama and GPT-3 train, rather than Adam's default 0.999)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 turns clipping off)."""
    eval_interval: int = 50
    """Measure the validation loss every this many steps (and after the last one)."""
    eval_batches: int = 8
    """Batches averaged for each validation loss (always the same batches, so the curve is comparable)."""
    log_interval: int = 10
    """Record (and print, when a logger is given) the training loss every this many steps."""
    seed: int = 0
    """Seed of the weight initialisation and of the batch sampler."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "seq_len", "eval_interval", "eval_batches", "log_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps must lie in [0, max_steps={self.max_steps}], got {self.warmup_steps}")
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need lr > 0 and 0 <= min_lr_ratio <= 1, got lr={self.lr}, "
                             f"min_lr_ratio={self.min_lr_ratio}")


def get_batch(tokens: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of ``tokens``: inputs ``x`` (B, T) and next-token targets ``y = x`` shifted by one.

    Example: tokens ``[5, 6, 7, 8]``, ``seq_len=2``, a window starting at 1 gives ``x=[6, 7]``, ``y=[7, 8]``.
    """
    if len(tokens) < seq_len + 1:
        raise ValueError(f"need at least seq_len + 1 = {seq_len + 1} tokens to cut a batch, got {len(tokens)}")
    starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)
    windows = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


def lm_loss(model: Llama, x: np.ndarray, y: np.ndarray) -> Tensor:
    """Mean next-token cross-entropy in nats: ``-mean log p(y[b, t] | x[b, :t + 1])``."""
    logits = model(x)  # (B, T, vocab)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # (B*T, vocab), (B*T,)


def estimate_loss(model: Llama, tokens: np.ndarray, config: TrainConfig) -> float:
    """Mean loss over ``config.eval_batches`` fixed batches of ``tokens`` (the same batches at every call)."""
    rng = np.random.default_rng(config.seed + 1)
    with no_grad():
        losses = [lm_loss(model, *get_batch(tokens, config.batch_size, config.seq_len, rng)).item()
                  for _ in range(config.eval_batches)]
    return float(np.mean(losses))


def make_optimizer(model: Llama, config: TrainConfig) -> optim.AdamW:
    """AdamW with weight decay on the matrices (embeddings, projections) and none on the RMSNorm gains."""
    groups = optim.weight_decay_groups(model.parameters(), config.weight_decay)
    return optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def train(
    model: Llama,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; return the history, one record per logged step:
    ``{"step", "lr", "train_loss"}``, plus ``"val_loss"`` on evaluation steps.

    ``train_loss`` is the mean over the steps since the previous record (less noisy than one batch). Each step:
    set the learning rate (:func:`minillama.autograd.optim.cosine_lr`), forward, cross-entropy, backward, clip the
    gradient norm, AdamW.
    """
    if config.seq_len > model.config.max_seq_len:
        raise ValueError(f"seq_len ({config.seq_len}) exceeds the model's max_seq_len ({model.config.max_seq_len})")
    rng = np.random.default_rng(config.seed)
    optimizer = make_optimizer(model, config)
    history: list[dict[str, float]] = []
    recent: list[float] = []
    for step in range(1, config.max_steps + 1):
        min_lr = config.lr * config.min_lr_ratio
        lr = optim.cosine_lr(step - 1, config.lr, config.warmup_steps, config.max_steps, min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = lm_loss(model, *get_batch(train_tokens, config.batch_size, config.seq_len, rng))
        optimizer.zero_grad()
        loss.backward()
        if config.grad_clip > 0:
            optim.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        recent.append(loss.item())
        evaluate = step % config.eval_interval == 0 or step == config.max_steps
        if step % config.log_interval == 0 or evaluate:
            record = {"step": step, "lr": lr, "train_loss": float(np.mean(recent))}
            recent = []
            if evaluate:
                record["val_loss"] = estimate_loss(model, val_tokens, config)
            history.append(record)
            if log is not None:
                val = f"  val {record['val_loss']:.4f}" if evaluate else ""
                log(f"step {step:5d}  lr {lr:.2e}  train {record['train_loss']:.4f}{val}")
    return history


def bits_per_byte(loss_nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Convert a loss in nats per token to bits per byte of text: ``loss * tokens / bytes / ln 2``.

    Independent of the tokenizer, so models with different vocabularies (and a bigram baseline) compare fairly.
    Example: 1.0 nat/token at 2 bytes/token is ``0.5 / ln 2 = 0.721`` bits per byte.
    """
    return loss_nats_per_token * n_tokens / n_bytes / math.log(2)


# --------------------------------------------------------------------------------------------------------------------
# Command line: tinyshakespeare end to end


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minillama.numpy_llama",
        description="Train the numpy Llama on tinyshakespeare with a byte-level BPE tokenizer; write metrics JSON.",
    )
    parser.add_argument("--preset", default="tiny", choices=("nano", "tiny", "small-100m"),
                        help="model shape (default: tiny)")
    parser.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size (default: 512)")
    parser.add_argument("--text", default="tinyshakespeare", help="corpus name or path for load_text")
    parser.add_argument("--out", type=Path, help="write the metrics JSON here")
    for field in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                            help=f"(default: {field.default})")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Tokenize, split 90/10, train, sample; print progress and return (and optionally write) the metrics."""
    from minillama.data import load_text
    from minillama.tokenizer import BPETokenizer

    args = _parser().parse_args(argv)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    started = time.perf_counter()
    text = load_text(args.text)
    split = int(0.9 * len(text))
    tokenizer = BPETokenizer().train(text[:split], vocab_size=args.vocab_size)
    encoder = tokenizer.to_tiktoken()
    train_tokens = np.array(encoder.encode_ordinary(text[:split]), dtype=np.int64)
    val_tokens = np.array(encoder.encode_ordinary(text[split:]), dtype=np.int64)
    val_bytes = len(text[split:].encode("utf-8"))
    print(f"tokenizer: {tokenizer.n_vocab} ids; {len(train_tokens):,} train / {len(val_tokens):,} val tokens")

    manual_seed(config.seed)
    model = Llama(get_preset(args.preset, vocab_size=tokenizer.n_vocab))
    print(f"model: {args.preset}, {model.num_parameters():,} parameters")
    history = train(model, train_tokens, val_tokens, config, log=print)
    final = history[-1]["val_loss"]
    prompt = np.array([encoder.encode_ordinary("ROMEO:\n")])
    sample = tokenizer.decode(generate(model, prompt, 200, temperature=0.8, top_k=50, rng=config.seed)[0].tolist())
    metrics = {
        "command": "python -m minillama.numpy_llama " + " ".join(sys.argv[1:] if argv is None else argv),
        "preset": args.preset,
        "model_config": model.config.to_dict(),
        "num_params": model.num_parameters(),
        "train_config": dataclasses.asdict(config),
        "tokenizer_vocab_size": tokenizer.n_vocab,
        "bytes_per_token": val_bytes / len(val_tokens),
        "history": history,
        "final_val_loss": final,
        "final_val_bits_per_byte": bits_per_byte(final, len(val_tokens), val_bytes),
        "sample": sample,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
                   f"numpy {np.__version__}",
    }
    print(f"final val loss {final:.4f} nats/token = {metrics['final_val_bits_per_byte']:.4f} bits/byte")
    print(sample)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
