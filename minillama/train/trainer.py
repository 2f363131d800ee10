"""The single-process ``Trainer``: ``Trainer(config).fit()`` is the whole of ``minillama train``.

The constructor builds the pieces; ``fit`` runs chapter 7's loop: batch, learning rate, forward/backward with
accumulation, clip, guard, step, log, evaluate, checkpoint, each one call into a module of its own. Chapter 9's
:class:`~minillama.parallel.training.DistributedTrainer` subclasses it (model, evaluation, samples, logged loss,
checkpointer).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minillama.autograd.optim import weight_decay_groups
from minillama.config import ModelConfig, get_preset
from minillama.data.loader import TrainLoader, eval_batches, eval_windows
from minillama.data.tokenized import TokenizedCorpus, prepare_corpus
from minillama.device import resolve_device, resolve_dtype
from minillama.errors import UserError
from minillama.generate import sample_texts
from minillama.model import Llama
from minillama.train import step as steps
from minillama.train import training_checkpoint as checkpoints
from minillama.train.config import TrainConfig
from minillama.train.evaluate import loss_sums, metrics_from_sums
from minillama.train.guard import NonFiniteGuard
from minillama.train.metrics import MetricsLogger, ProgressReport
from minillama.train.run_folder import claim_run_folder, write_run_config
from minillama.train.schedule import lr_at
from minillama.train.stop_signals import stop_at_step_boundary
from minillama.train.wrapping import wrap_single_device


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_data(config: TrainConfig, progress: bool = True) -> TokenizedCorpus:
    """The tokenizer and token shards of ``config``'s corpus: from the cache, or made now (and cached)."""
    vocab_size = config.vocab_size or get_preset(config.model).vocab_size
    return prepare_corpus(config.corpus, config.tokenizer, vocab_size, config.val_fraction, progress=progress)


def build_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Loshchilov and Hutter 2019) with chapter 1's parameter groups; PyTorch's fused kernel on CUDA."""
    return torch.optim.AdamW(weight_decay_groups(model.parameters(), config.weight_decay), lr=config.lr,
                             betas=(config.beta1, config.beta2), eps=config.eps,
                             fused=device.type == "cuda" or None)


class Trainer:
    """Trains a ``Llama`` as ``config`` says, in one process on one device. ``data`` skips tokenization (a corpus
    already prepared); ``log`` receives the progress lines (default: stderr)."""

    rank, world_size, data_rank, data_world_size = 0, 1, 0, 1  # one process; the distributed trainer sets them
    sharded = False  # True: every rank writes its part of each checkpoint (FSDP)

    def __init__(self, config: TrainConfig, data: TokenizedCorpus | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.config = config = config.with_run_dir()
        self.run_dir = Path(config.run_dir)
        self._print = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.device = resolve_device(config.device)
        self.amp_dtype = resolve_dtype(config.dtype, self.device)
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        self.data = data or prepare_data(config, progress=config.progress and self.is_main)
        self.model_config: ModelConfig = get_preset(config.model, vocab_size=self.data.tokenizer.n_vocab)
        if config.seq_len > self.model_config.max_seq_len:
            raise ValueError(f"seq_len ({config.seq_len}) exceeds the max_seq_len of preset {config.model!r} "
                             f"({self.model_config.max_seq_len})")
        self.loader = TrainLoader(self.data.train, config.batch_size, config.seq_len, seed=config.seed,
                                  rank=self.data_rank, world_size=self.data_world_size, device=self.device)
        if not len(eval_windows(len(self.data.val), config.seq_len)):  # say so now, not at the first evaluation
            raise UserError(f"the validation split of {config.corpus} has {len(self.data.val):,} tokens, too few for "
                            f"one window of {config.seq_len + 1}: use a larger corpus or a smaller seq_len")
        self.token_bytes = torch.from_numpy(self.data.token_bytes()).to(self.device)  # bytes per token id
        self.model, self.train_model = self.build_model()
        self.optimizer = build_optimizer(self.model, config, self.device)
        self.checkpointer = self.build_checkpointer()
        self.guard = NonFiniteGuard(config.max_bad_steps, spike_factor=config.spike_factor,
                                    uniform_loss=math.log(self.model_config.vocab_size))
        self.state = checkpoints.TrainState()  # step, tokens, time, best val loss: what a checkpoint restores
        self.tokens_per_step = config.batch_size * config.seq_len * config.grad_accum_steps * self.data_world_size
        self.last_eval: dict[str, float] = {}
        self.last_eval_step: int | None = None
        self.last_samples: list[str] = []
        self.stopped_by = ""  # the stop signal that ended fit early (SIGINT, SIGTERM, SIGHUP), if any
        resume_from = checkpoints.resolve_checkpoint(config.resume) if config.resume else None
        # the run folder: refused if it holds another run, locked against a second live one (run_folder.py)
        self.run_lock = (claim_run_folder(self.run_dir, resume_from=resume_from, overwrite=config.overwrite)
                         if self.is_main else None)
        self.metrics = MetricsLogger(self.run_dir / "metrics.jsonl", enabled=self.is_main)
        if resume_from is not None:
            try:
                self.resume(resume_from)
            except BaseException:
                self.close()
                raise
        if self.is_main:  # only now: a resume that failed leaves the run's own config.toml as it was
            write_run_config(self.run_dir, config)

    @property
    def is_main(self) -> bool:
        """The process that prints and writes files (rank 0)."""
        return self.rank == 0

    @property
    def step(self) -> int:
        return self.state.step

    def build_model(self) -> tuple[Llama, torch.nn.Module]:
        """The model (seeded init) and what the loop calls: the same module, with activation checkpointing and
        compile applied from outside."""
        if self.config.float8:
            raise ValueError("float8 is applied by minillama.parallel (chapters 8-9): run the `minillama train` "
                             "command, or minillama.parallel.training.DistributedTrainer")
        model = Llama(self.model_config).to(self.device)
        return model, wrap_single_device(model, self.config)

    def build_checkpointer(self) -> checkpoints.Checkpointer:
        return checkpoints.Checkpointer(self.run_dir / "checkpoints", keep_last=self.config.keep_last)

    def log(self, text: str) -> None:
        if self.is_main:
            self._print(text)

    def close(self) -> None:
        """Release the run folder (``fit`` does at its end) so that another run may continue it."""
        if self.run_lock is not None:
            self.run_lock.release()

    # --- the loop ---------------------------------------------------------------------------------------------------

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``max_steps`` (or stop after ``stop_at`` steps, keeping the place in a checkpoint, as a job
        killed by a cluster's time limit would); return the final summary, also the last line of metrics.jsonl."""
        config, state = self.config, self.state
        self.log(self.describe())
        report = ProgressReport(config.max_steps, state.step, enabled=config.progress and self.is_main,
                                flops_per_token=self.model_config.flops_per_token(config.seq_len),
                                device=self.device, devices=self.world_size)
        session_start = time.perf_counter() - state.elapsed
        try:
            with report, stop_at_step_boundary() as stop:  # Ctrl-C, SIGTERM, SIGHUP: finish the step, save, return
                while state.step < min(config.max_steps, stop_at or config.max_steps):
                    report.start_step()
                    micro_batches = [next(self.loader) for _ in range(config.grad_accum_steps)]  # 1. batch
                    lr = lr_at(state.step, config)                                                # 2. learning rate
                    steps.set_learning_rate(self.optimizer, lr)
                    loss = steps.forward_backward(self.train_model, micro_batches, amp_dtype=self.amp_dtype,
                                                  grad_scaler=self.grad_scaler)                  # 3. forward/backward
                    grad_norm = steps.clip_gradients(self.train_model, self.optimizer, config.grad_clip,
                                                     self.grad_scaler)                           # 4. clip
                    overflow = self.grad_scaler is not None and math.isfinite(loss) and not math.isfinite(grad_norm)
                    applied = self.guard_accepts(loss, grad_norm, overflow)                   # 5. guard
                    steps.optimizer_step(self.optimizer, applied, self.grad_scaler)               # 6. step
                    state.step += 1
                    state.tokens += self.tokens_per_step
                    state.elapsed = time.perf_counter() - session_start
                    self.log_step(report, loss, lr, grad_norm, overflow)                           # 7. log
                    if state.step % config.eval_interval == 0 or state.step == config.max_steps:
                        self.evaluate_and_sample()                                                 # 8. evaluate
                    if state.step % config.checkpoint_interval == 0 or state.step == config.max_steps:
                        self.save_checkpoint()                                                     # 9. checkpoint
                    if self.stop_requested(stop):
                        self.stopped_by = stop.name
                        break
            if state.step < config.max_steps and state.saved_step != state.step:  # stopped early: keep the place
                self.save_checkpoint()
        finally:
            self.close()
        summary = {"step": state.step, "tokens": state.tokens, "elapsed_s": state.elapsed, **self.last_eval,
                   "best_val_loss": state.best_val_loss, "skipped_steps": self.guard.total_skipped}
        self.metrics.log("summary", **summary)
        return summary

    def stop_requested(self, stop) -> bool:
        """Whether a stop signal came (the distributed trainer's ranks vote, to stop at the same step)."""
        return stop.signal_number is not None

    def guard_accepts(self, loss: float, grad_norm: float, overflow: bool = False) -> bool:
        """The guard's verdict (non-finite or spiking loss); a bad step is logged first (the guard raises at one too
        many). A spike is judged on the mean loss over ranks, the same on every rank (NaN stays NaN); that mean is a
        collective, so every rank takes it at every step, even on a float16 overflow (the scaler's to skip)."""
        step = self.state.step + 1
        loss = self.mean_over_ranks(loss)
        if overflow:
            return True
        reason = self.guard.why_bad(loss, grad_norm)
        if reason is not None:
            self.metrics.log("skip", step, loss=loss, grad_norm=grad_norm)
            self.log(f"step {step}: {reason}; step skipped "
                     f"({self.guard.consecutive + 1} in a row, at most {self.guard.max_bad_steps})")
        return self.guard.check(step, loss, grad_norm)

    def log_step(self, report: ProgressReport, loss: float, lr: float, grad_norm: float, overflow: bool) -> None:
        """The progress bar, and every ``log_interval`` steps a train record in metrics.jsonl."""
        step = self.state.step
        if overflow:
            self.metrics.log("overflow", step, grad_norm=grad_norm, loss_scale=self.grad_scaler.get_scale())
        report.end_step(self.tokens_per_step)
        if step % self.config.log_interval == 0 or step in (1, self.config.max_steps):
            loss = self.mean_over_ranks(loss)
            self.metrics.log("train", step, loss=loss, lr=lr, grad_norm=grad_norm, tokens=self.state.tokens,
                             **report.rates(loss), elapsed_s=self.state.elapsed)

    def mean_over_ranks(self, value: float) -> float:
        return value

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        """Validation loss and bits per byte (:mod:`~minillama.train.evaluate`) over the first ``max_batches``
        batches of the validation split (default ``eval_batches``; 0 = all of it)."""
        max_batches = self.config.eval_batches if max_batches is None else max_batches
        batches = eval_batches(self.data.val, self.config.batch_size, self.config.seq_len, rank=self.data_rank,
                               world_size=self.data_world_size, max_batches=max_batches, device=self.device)
        totals = loss_sums(self.train_model, batches, self.token_bytes, self.amp_dtype)
        return metrics_from_sums(self.sum_over_ranks(totals, max_batches))

    def sum_over_ranks(self, totals: torch.Tensor, max_batches: int) -> torch.Tensor:
        return totals

    def samples(self) -> list[str]:
        """``num_samples`` continuations of ``sample_prompt``, seeded by (seed, step); the run's RNGs are untouched."""
        c = self.config
        with steps.autocast(self.device, self.amp_dtype):
            return sample_texts(self.model, self.data.tokenizer, c.sample_prompt, c.num_samples, c.sample_tokens,
                                temperature=c.temperature, top_k=c.top_k or None, seed=c.seed * 1_000_003 + self.step)

    def evaluate_and_sample(self) -> None:
        final = self.step == self.config.max_steps  # the headline number always sweeps all of validation
        self.last_eval = self.evaluate(max_batches=0 if final else None)
        self.last_eval_step = self.step
        self.state.best_val_loss = min(self.state.best_val_loss, self.last_eval["val_loss"])
        self.metrics.log("eval", self.step, **self.last_eval, elapsed_s=self.state.elapsed)
        self.last_samples = self.samples() if self.config.num_samples else []
        self.metrics.samples(self.step, self.last_samples, self.last_eval["val_bpb"])
        self.log(f"step {self.step}: val loss {self.last_eval['val_loss']:.4f}, "
                 f"val bits per byte {self.last_eval['val_bpb']:.4f}")

    def save_checkpoint(self) -> Path | None:
        """Save the current step (rank 0 only; a sharded checkpointer saves on every rank)."""
        if not (self.is_main or self.sharded):
            return None
        train_state = checkpoints.capture_train_state(self.state, self.loader, self.guard, self.grad_scaler,
                                                      self.config, self.data_world_size)
        evaluated = self.last_eval_step == self.step  # "best" is chosen among checkpoints evaluated at their step
        self.checkpointer.protected = self.guard.last_good_checkpoint  # retention never deletes it
        path = self.checkpointer.save(self.step, self.model, self.optimizer, train_state,
                                      tokenizer_file=self.data.tokenizer_path,
                                      val_loss=self.last_eval.get("val_loss") if evaluated else None)
        self.guard.saved(str(path))
        self.state.saved_step = self.step
        return path

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint: weights, optimizer, data position, schedule, guard, scaler and RNG states."""
        saved = self.checkpointer.load(path, self.model, self.optimizer)
        replicas = int(saved.get("data_world_size", saved.get("world_size", 1)))
        changed = self.config.resume_changes(saved["config"], path, replicas, self.data_world_size)
        if changed:
            self.log(f"warning: {', '.join(changed)} changed since {path}: the run continues, but not as the "
                     f"uninterrupted run would have")
        checkpoints.restore_train_state(saved, self.state, self.loader, self.guard, self.grad_scaler,
                                        checkpoint_dir=Path(path).parent)
        self.guard.saved(str(path))
        if self.is_main or self.sharded:
            self.checkpointer.remove_leftovers()  # of a run killed during a save, or of a full disk
        self.metrics.truncate_after(self.step)
        self.log(f"resumed from {path} at step {self.step}")

    def describe(self) -> str:
        c, m, precision = self.config, self.model_config, str(self.amp_dtype or "float32").removeprefix("torch.")
        return (f"run folder {self.run_dir}\nmodel {c.model}: {self.model.num_params() / 1e6:.2f}M parameters (dim "
                f"{m.dim}, {m.n_layers} layers, {m.n_heads} heads, {m.n_kv_heads} kv heads, vocab {m.vocab_size})\n"
                f"data {c.corpus}: {len(self.data.train):,} train / {len(self.data.val):,} val tokens, tokenizer "
                f"{self.data.tokenizer_path.name}\ndevice {self.device} ({precision}), {self.tokens_per_step:,} tokens"
                f" per step ({self.data_world_size} x {c.grad_accum_steps} x {c.batch_size} x {c.seq_len}), "
                f"{c.max_steps:,} steps")
