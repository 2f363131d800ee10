"""The ``Trainer``: builds a run from a ``TrainConfig`` and owns the loop (steps, evaluation, samples, checkpoints).

The loop itself is short; what makes it a trainer is the bookkeeping around it, all in one place:

1. **setup**: pick the device and precision, seed everything, tokenize the corpus (cached), build the model, let
   the caller wrap it (``wrap_model``: compile, activation checkpointing, and in chapter 9 DDP/FSDP), build AdamW;
2. **step** (:func:`~minillama.train.step.train_step`): micro-batches, clipping, the non-finite guard, the
   learning rate of the schedule;
3. **evaluate** every ``eval_interval`` steps: validation loss and bits per byte on a deterministic sweep, and a
   few samples written to ``samples.txt``;
4. **checkpoint** every ``checkpoint_interval`` steps and at the end, atomically, with every piece of state, so that
   ``--resume`` continues with the very same losses.

Distributed runs reuse all of it: ``rank``/``world_size`` shard the data, only rank 0 writes files and prints
(``is_main``), ``all_reduce`` sums evaluation statistics across ranks, and ``checkpointer`` can be replaced by a
sharded one. The model file never learns that it is being trained.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from minillama.config import ModelConfig, get_preset
from minillama.data.loader import TrainLoader, eval_batches, eval_windows
from minillama.data.tokenized import EOT, TokenizedCorpus, prepare_corpus
from minillama.errors import UserError
from minillama.model import Llama
from minillama.train.config import TrainConfig
from minillama.train.guard import NonFiniteGuard
from minillama.train.metrics import MetricsLogger, Throughput, mfu, peak_flops
from minillama.train.run_folder import claim_run_folder, write_run_config
from minillama.train.schedule import lr_at
from minillama.train.step import StepResult, train_step
from minillama.train.stop_signals import stop_at_step_boundary
from minillama.train.training_checkpoint import Checkpointer, resolve_checkpoint, rng_state, set_rng_state
from minillama.train.wrapping import wrap_single_device

# --- device and precision --------------------------------------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {name!r} is not supported: use cpu, cuda, cuda:N, mps or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UserError(f"device {name!r} was asked for, but MPS is not available here; use --device cpu")
    return device


def autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a config's ``dtype`` on ``device`` (``None``: plain float32).

    ``auto`` means bfloat16 on CUDA GPUs that have it (Ampere and later) and float16 on older ones (T4, V100),
    float32 on CPU and MPS, where 16-bit matmuls are rarely faster and the book's numbers should be exact.
    """
    if dtype == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def default_run_dir(config: TrainConfig) -> str:
    """``runs/<model>-<corpus>-<date>-<time>`` (a local corpus is named by its file or folder name)."""
    corpus = Path(config.corpus).stem if Path(config.corpus).exists() else config.corpus
    return str(Path("runs") / f"{config.model}-{corpus}-{time.strftime('%Y%m%d-%H%M%S')}")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Loshchilov and Hutter 2019) with weight decay on matrices only; the fused kernel on CUDA.

    Norm weights (1-D) are not decayed: pulling a scale towards 0 is not regularization, it is a bias. Embeddings
    are matrices and are decayed, as in Llama and GPT-2.
    """
    matrices = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": config.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
                             fused=device.type == "cuda" or None)


# --- the trainer -----------------------------------------------------------------------------------------------------


class Trainer:
    """Trains a ``Llama`` as ``config`` says. ``Trainer(config).fit()`` is the whole of ``minillama train``.

    ``rank``/``world_size``/``all_reduce``/``wrap_model``/``checkpointer`` are the seams for distributed training:
    the defaults are one process on one device. With ``tensor_parallel`` T > 1, each T consecutive ranks split one
    model replica and read the same batches: the data is dealt by data-parallel rank ``rank // T`` over
    ``world_size // T`` replicas.
    """

    def __init__(self, config: TrainConfig, *, rank: int = 0, world_size: int = 1,
                 wrap_model: Callable[[torch.nn.Module, TrainConfig], torch.nn.Module] | None = None,
                 all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 checkpointer: Checkpointer | None = None, sharded: bool = False, meta_init: bool = False,
                 data: TokenizedCorpus | None = None, log: Callable[[str], None] | None = None,
                 tensor_parallel: int = 1) -> None:
        if tensor_parallel < 1 or world_size % tensor_parallel:
            raise ValueError(f"world_size ({world_size}) must be a multiple of tensor_parallel ({tensor_parallel})")
        self.rank, self.world_size = rank, world_size
        self.tensor_parallel = tensor_parallel
        # the data-parallel view: which replica this rank belongs to, and how many replicas read different data
        self.data_rank, self.data_world_size = rank // tensor_parallel, world_size // tensor_parallel
        self.is_main = rank == 0
        self.sharded = sharded  # every rank saves and loads its own part of each checkpoint (FSDP)
        self.all_reduce = all_reduce or (lambda tensor: tensor)
        self._print = log or (lambda text: print(text, file=sys.stderr, flush=True))
        resume_from = resolve_checkpoint(config.resume) if config.resume else None
        if resume_from is not None and not config.run_dir:
            config = config.replace(run_dir=str(resume_from.parent.parent))
        if not config.run_dir:
            config = config.replace(run_dir=default_run_dir(config))
        self.config = config
        self.run_dir = Path(config.run_dir)

        # 1. device, precision, seeds
        self.device = resolve_device(config.device)
        self.amp_dtype = autocast_dtype(config.dtype, self.device)
        self.grad_scaler = (torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None)
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)

        # 2. data: tokenizer and token shards, cached after the first run
        preset = get_preset(config.model)
        self.data = data or prepare_corpus(config.corpus, config.tokenizer, preset.vocab_size, config.val_fraction,
                                           progress=config.progress and self.is_main)
        vocab = self.data.tokenizer.n_vocab
        self.model_config: ModelConfig = preset if vocab == preset.vocab_size else get_preset(config.model,
                                                                                              vocab_size=vocab)
        if config.seq_len > self.model_config.max_seq_len:
            raise ValueError(f"seq_len ({config.seq_len}) exceeds the max_seq_len of preset {config.model!r} "
                             f"({self.model_config.max_seq_len})")
        self.loader = TrainLoader(self.data.train, config.batch_size, config.seq_len, seed=config.seed,
                                  rank=self.data_rank, world_size=self.data_world_size, device=self.device)
        if not len(eval_windows(len(self.data.val), config.seq_len)):  # say so now, not at the first evaluation
            raise UserError(f"the validation split of {config.corpus} has {len(self.data.val):,} tokens, too few for "
                            f"one window of {config.seq_len + 1}: use a larger corpus or a smaller seq_len")
        self.token_bytes = torch.from_numpy(self.data.token_bytes()).to(self.device)

        # 3. model (seeded init), wrapped from outside, and its optimizer. With ``meta_init`` the model is built
        # on the meta device (no memory), wrapped (FSDP shards it), and only then materialized, shard by shard.
        if meta_init:
            with torch.device("meta"):
                self.model = Llama(self.model_config)
        else:
            self.model = Llama(self.model_config).to(self.device)
        if config.float8 and wrap_model is None:
            raise ValueError("float8 is applied by minillama.parallel (chapters 8-9): run the `minillama train` "
                             "command, or pass wrap_model (see minillama.parallel.training.single_device_wrapper)")
        self.train_model = (wrap_model or wrap_single_device)(self.model, config)
        if meta_init:
            self.model.to_empty(device=self.device)
            self.model.init_weights()
        self.optimizer = build_optimizer(self.model, config, self.device)

        # 4. bookkeeping
        self.checkpointer = checkpointer or Checkpointer(self.run_dir / "checkpoints", keep_last=config.keep_last)
        self.guard = NonFiniteGuard(config.max_bad_steps, spike_factor=config.spike_factor,
                                    uniform_loss=math.log(self.model_config.vocab_size))
        self.step = 0
        self.saved_step: int | None = None  # step of the last checkpoint written by this process
        self.tokens_seen = 0
        self.elapsed = 0.0  # training wall time over all sessions of this run (s)
        self.best_val_loss = math.inf
        self.last_eval: dict[str, float] = {}
        self.last_eval_step: int | None = None
        self.stopped_by = ""  # the stop signal that ended fit early (SIGINT, SIGTERM, SIGHUP), if any
        self.last_samples: list[str] = []
        self.tokens_per_step = config.batch_size * config.seq_len * config.grad_accum_steps * self.data_world_size
        self.flops_per_token = self.model_config.flops_per_token(config.seq_len)
        self.peak_flops = peak_flops(self.device)
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

    # --- helpers ----------------------------------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def log(self, text: str) -> None:
        if self.is_main:
            self._print(text)

    def close(self) -> None:
        """Release the run folder (``fit`` does at its end) so that another run may continue it."""
        if self.run_lock is not None:
            self.run_lock.release()

    def describe(self) -> str:
        """A one-paragraph summary of the run for the start of the log."""
        c, m = self.config, self.model_config
        precision = "float32" if self.amp_dtype is None else f"{str(self.amp_dtype).removeprefix('torch.')} autocast"
        return (
            f"run folder {self.run_dir}\n"
            f"model {c.model}: {self.model.num_params() / 1e6:.2f}M parameters (dim {m.dim}, {m.n_layers} layers, "
            f"{m.n_heads} heads, {m.n_kv_heads} kv heads, vocab {m.vocab_size})\n"
            f"data {c.corpus}: {len(self.data.train):,} train / {len(self.data.val):,} val tokens "
            f"({self.loader.batches_per_epoch:,} batches per epoch), tokenizer {self.data.tokenizer_path.name}\n"
            f"device {self.device} ({precision}), {self.tokens_per_step:,} tokens per step "
            f"({self.data_world_size} x {c.grad_accum_steps} x {c.batch_size} x {c.seq_len}), {c.max_steps:,} steps"
            + (f"; {self.world_size} ranks = {self.data_world_size} data-parallel x {self.tensor_parallel} "
               f"tensor-parallel" if self.tensor_parallel > 1 else "")
        )

    # --- evaluation and samples -------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        """Validation loss (nats per token) and bits per byte on the deterministic sweep of the validation split
        (its first ``max_batches`` batches; default ``eval_batches``, 0 = all).

        ``bpb = sum of losses (nats) / bytes of the predicted tokens / ln 2``: independent of the tokenizer, so a
        byte-level and a BPE model, or two vocabulary sizes, compare on the same scale.
        """
        self.train_model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum (nats), tokens, bytes
        max_batches = self.config.eval_batches if max_batches is None else max_batches
        batches = eval_batches(self.data.val, self.config.batch_size, self.config.seq_len, rank=self.data_rank,
                               world_size=self.data_world_size, max_batches=max_batches, device=self.device)
        for inputs, targets in batches:
            with self.autocast():
                logits = self.train_model(inputs)  # (B, T, vocab)
            B, T, V = logits.shape  # batch, time, vocab
            loss = F.cross_entropy(logits.float().view(B * T, V), targets.reshape(B * T), reduction="sum")
            totals += torch.stack([loss.double(), torch.tensor(B * T, dtype=torch.float64, device=self.device),
                                   self.token_bytes[targets].sum().double()])
        if self.sharded:  # every forward is a collective: a rank with fewer windows runs (and discards) extra ones
            for _ in range(self._eval_batch_count(max_batches, 0)
                           - self._eval_batch_count(max_batches, self.data_rank)):
                with self.autocast():
                    self.train_model(torch.zeros(1, self.config.seq_len, dtype=torch.long, device=self.device))
        self.train_model.train()
        if self.rank % self.tensor_parallel:  # the ranks of a tensor-parallel group computed the same sums: count once
            totals.zero_()
        loss_sum, tokens, n_bytes = self.all_reduce(totals).tolist()
        return {"val_loss": loss_sum / tokens, "val_bpb": loss_sum / n_bytes / math.log(2), "val_tokens": int(tokens)}

    def _eval_batch_count(self, max_batches: int, rank: int) -> int:
        """Evaluation batches of data-parallel ``rank``; rank 0 has the most (windows are dealt out round-robin)."""
        windows = len(eval_windows(len(self.data.val), self.config.seq_len, rank, self.data_world_size))
        count = -(-windows // self.config.batch_size)
        return min(count, max_batches) if max_batches else count

    def samples(self) -> list[str]:
        """``num_samples`` continuations of ``sample_prompt``, from a generator seeded by (seed, step), so the
        samples are reproducible and the training run's own random state is untouched.

        A sharded model runs every ``sample_tokens`` step on every rank (no early stop at the end-of-text token:
        ranks that sampled differently would otherwise stop at different steps); the text is cut at the first one.
        Generation runs under the training autocast, the dtype FSDP gathers the weights in.
        """
        from minillama.generate import generate

        config, tokenizer = self.config, self.data.tokenizer
        prompt = tokenizer.encode(config.sample_prompt, disallowed_special=()) or [0]
        stops = [tokenizer.special_tokens[EOT]] if EOT in tokenizer.special_tokens else []
        generator = torch.Generator(self.device).manual_seed(config.seed * 1_000_003 + self.step)
        max_new = min(config.sample_tokens, self.model_config.max_seq_len - len(prompt))
        # Tensor parallelism splits the heads (the KV cache holds all of them) and the positions (evenly): sample
        # by recomputing the padded sequence, which gives the same tokens.
        tensor_parallel_sampling = ({"use_cache": False, "pad_to_multiple": self.tensor_parallel}
                                    if self.tensor_parallel > 1 else {})
        self.model.eval()
        texts = []
        # Eagerly: through compiled blocks every layer (its KV-cache slot), prompt length and decode position would be
        # one more graph to compile, for a few tokens (torch >= 2.6; older versions compile them).
        eager = (torch.compiler.set_stance("force_eager") if hasattr(torch.compiler, "set_stance")
                 else contextlib.nullcontext())
        for _ in range(config.num_samples):
            with self.autocast(), eager:
                ids = generate(self.model, prompt, max_new, temperature=config.temperature,
                               top_k=config.top_k or None, stop_tokens=[] if self.sharded else stops,
                               generator=generator, **tensor_parallel_sampling)[0].tolist()
            end = next((k for k, i in enumerate(ids) if i in stops), len(ids))
            texts.append(tokenizer.decode(ids[:end]))
        self.model.train()
        return texts

    def _evaluate_and_sample(self) -> None:
        final = self.step == self.config.max_steps  # the headline number always sweeps all of validation
        self.last_eval = self.evaluate(max_batches=0 if final else None)
        self.last_eval_step = self.step
        self.best_val_loss = min(self.best_val_loss, self.last_eval["val_loss"])
        self.metrics.log("eval", self.step, **self.last_eval, elapsed_s=self.elapsed)
        if self.config.num_samples:
            # Every rank samples (under FSDP each forward needs all of them); the generator is seeded identically.
            self.last_samples = texts = self.samples()
        if self.is_main and self.config.num_samples:
            with open(self.run_dir / "samples.txt", "a") as f:
                for i, text in enumerate(texts):
                    f.write(f"=== step {self.step}, sample {i + 1} (val bpb {self.last_eval['val_bpb']:.3f})\n"
                            f"{text}\n\n")
        self.log(f"step {self.step}: val loss {self.last_eval['val_loss']:.4f}, "
                 f"val bits per byte {self.last_eval['val_bpb']:.4f}")

    # --- checkpoints ------------------------------------------------------------------------------------------------

    def train_state(self) -> dict[str, Any]:
        """Everything besides the weights and the optimizer that the next step depends on."""
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "elapsed": self.elapsed,
            "best_val_loss": self.best_val_loss,
            "loader": self.loader.state_dict(),
            "scheduler": {"step": self.step, "schedule": self.config.schedule},  # the schedule is a function of it
            "guard": self.guard.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "rng": rng_state(),
            "config": self.config.to_toml(),
            "world_size": self.world_size,
            "data_world_size": self.data_world_size,
        }

    def save_checkpoint(self) -> Path | None:
        """Save a checkpoint of the current step (rank 0 only, or every rank for a sharded checkpointer)."""
        if not (self.is_main or self.sharded):
            return None
        evaluated = self.last_eval_step == self.step  # "best" is chosen among checkpoints evaluated at their step
        self.checkpointer.protected = self.guard.last_good_checkpoint  # retention never deletes it
        path = self.checkpointer.save(self.step, self.model, self.optimizer, self.train_state(),
                                      tokenizer_file=self.data.tokenizer_path,
                                      val_loss=self.last_eval.get("val_loss") if evaluated else None)
        self.guard.saved(str(path))
        self.saved_step = self.step
        return path

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, data position, schedule, guard, scaler and RNG states."""
        state = self.checkpointer.load(path, self.model, self.optimizer)
        saved_replicas = int(state.get("data_world_size", state.get("world_size", 1)))
        self._check_compatible(state["config"], path, saved_world_size=saved_replicas)
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        self.elapsed, self.best_val_loss = float(state["elapsed"]), float(state["best_val_loss"])
        self.loader.load_state_dict(state["loader"])
        self.guard.load_state_dict(state["guard"], checkpoints=Path(path).parent)
        self.guard.saved(str(path))
        if self.is_main or self.sharded:
            self.checkpointer.remove_leftovers()  # of a run killed during a save, or of a full disk
        self.saved_step = self.step
        if self.grad_scaler is not None and state["grad_scaler"] is not None:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        set_rng_state(state["rng"])
        self.metrics.truncate_after(self.step)
        self.log(f"resumed from {path} at step {self.step}")

    def _check_compatible(self, saved_toml: str, path: Path, saved_world_size: int = 1) -> None:
        """Refuse to resume into another corpus or tokenizer; warn when the data order will differ.

        A sharded checkpoint may resume on another number of processes: what fixes the data order is the global
        batch, ``batch_size x data-parallel ranks`` windows, not ``batch_size`` alone (``saved_world_size`` counts
        the data-parallel ranks: a tensor-parallel group reads one share).
        """
        saved = TrainConfig.from_toml_text(saved_toml, source=f"the config saved in {path}")
        for name in ("model", "corpus", "tokenizer"):
            if getattr(saved, name) != getattr(self.config, name):
                raise ValueError(f"cannot resume {path}: it was trained with {name}={getattr(saved, name)!r}, "
                                 f"this run asks for {getattr(self.config, name)!r}")
        changed = [name for name in ("seed", "seq_len", "grad_accum_steps", "val_fraction")
                   if getattr(saved, name) != getattr(self.config, name)]
        if saved.batch_size * saved_world_size != self.config.batch_size * self.data_world_size:
            changed.append("batch_size" if saved_world_size == self.data_world_size else "batch_size x world_size")
        if changed:
            self.log(f"warning: {', '.join(changed)} changed since {path}: the run continues, but not as the "
                     f"uninterrupted run would have")

    # --- the loop ---------------------------------------------------------------------------------------------------

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``max_steps``; returns the final summary (also the last record of ``metrics.jsonl``).

        ``stop_at`` interrupts the run after that many steps (the schedule still spans ``max_steps``) and saves a
        checkpoint there, as a job killed by a cluster's time limit would have: ``--resume`` continues it.
        """
        from tqdm.auto import tqdm

        config = self.config
        self.log(self.describe())
        throughput = Throughput()
        bar = tqdm(total=config.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (config.progress and self.is_main))
        session_start = time.perf_counter() - self.elapsed
        try:
            with stop_at_step_boundary() as stop:  # Ctrl-C, SIGTERM, SIGHUP: finish the step, save, return
                while self.step < min(config.max_steps, stop_at or config.max_steps):
                    throughput.start()
                    lr = lr_at(self.step, config)
                    micro_batches = [next(self.loader) for _ in range(config.grad_accum_steps)]
                    result = train_step(self.train_model, self.optimizer, micro_batches, lr=lr,
                                        grad_clip=config.grad_clip, accept=self._accept, autocast=self.autocast,
                                        grad_scaler=self.grad_scaler)
                    self.step += 1
                    self.tokens_seen += self.tokens_per_step
                    throughput.stop(self.tokens_per_step)
                    self.elapsed = time.perf_counter() - session_start
                    self._record(result, lr, throughput, bar)
                    if self.step % config.eval_interval == 0 or self.step == config.max_steps:
                        self._evaluate_and_sample()
                    if self.step % config.checkpoint_interval == 0 or self.step == config.max_steps:
                        self.save_checkpoint()
                    if self._stop_requested(stop):
                        self.stopped_by = stop.name
                        break
            if self.step < config.max_steps and self.saved_step != self.step:  # stopped early: keep the place
                self.save_checkpoint()
        finally:
            bar.close()
            self.close()
        summary = {"step": self.step, "tokens": self.tokens_seen, "elapsed_s": self.elapsed, **self.last_eval,
                   "best_val_loss": self.best_val_loss, "skipped_steps": self.guard.total_skipped}
        self.metrics.log("summary", **summary)
        return summary

    def _stop_requested(self, stop) -> bool:
        """Whether a stop signal came; every rank must stop at the same step, so under torchrun they vote."""
        flag = stop.signal_number is not None
        if self.world_size > 1:
            votes = self.all_reduce(torch.tensor([float(flag)], dtype=torch.float64, device=self.device))
            flag = bool(votes[0] > 0)
        return flag

    def _accept(self, loss: float, grad_norm: float) -> bool:
        """The guard's verdict on the step being taken (number ``self.step + 1``); a bad one is logged first, since
        the guard raises when it is one too many."""
        step = self.step + 1
        if self.world_size > 1:  # a spike is judged on the mean loss, the same on every rank (NaN stays NaN)
            total = self.all_reduce(torch.tensor([loss], dtype=torch.float64, device=self.device))
            loss = float(total[0]) / self.world_size
        reason = self.guard.why_bad(loss, grad_norm)
        if reason is not None:
            self.metrics.log("skip", step, loss=loss, grad_norm=grad_norm)
            self.log(f"step {step}: {reason}; step skipped "
                     f"({self.guard.consecutive + 1} in a row, at most {self.guard.max_bad_steps})")
        return self.guard.check(step, loss, grad_norm)

    def _record(self, result: StepResult, lr: float, throughput: Throughput, bar) -> None:
        if result.overflow:
            self.metrics.log("overflow", self.step, grad_norm=result.grad_norm,
                             loss_scale=self.grad_scaler.get_scale())
        bar.update(1)
        if self.step % self.config.log_interval == 0 or self.step in (1, self.config.max_steps):
            rate = throughput.rate()  # all ranks together
            loss = result.loss
            if self.world_size > 1:  # the mean over ranks (every rank logs at the same steps)
                loss = float(self.all_reduce(torch.tensor([loss], dtype=torch.float64, device=self.device))[0])
                loss /= self.world_size
            record = {"loss": loss, "lr": lr, "grad_norm": result.grad_norm, "tokens": self.tokens_seen,
                      "tokens_per_s": rate, "elapsed_s": self.elapsed}
            utilization = mfu(rate / self.world_size, self.flops_per_token, self.peak_flops)
            if utilization is not None:
                record["mfu"] = utilization
            self.metrics.log("train", self.step, **record)
            postfix = {"loss": f"{loss:.3f}", "tok/s": f"{rate:,.0f}"}
            if utilization is not None:
                postfix["mfu"] = f"{100 * utilization:.1f}%"
            bar.set_postfix(postfix, refresh=False)
