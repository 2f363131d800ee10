"""Chapter 7's ``Trainer`` over the ranks of a ``torchrun`` job: a subclass that overrides what changes.

* **data**: each node's local rank 0 tokenizes into the cache first; the loader deals each data-parallel rank its
  slice of every global batch (a tensor-parallel group of ``T`` ranks reads one slice);
* **model**: :func:`~minillama.parallel.parallelize.parallelize`; under FSDP on GPUs the model is built on the meta
  device and each rank materializes only its shards;
* **evaluation, samples, logged loss**: sums and means over ranks (every FSDP forward is a collective);
* **checkpoints**: DDP writes the single-device format from rank 0; FSDP writes a sharded checkpoint from every
  rank (:class:`~minillama.parallel.sharded_checkpoint.ShardedCheckpointer`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minillama.config import get_preset
from minillama.data.loader import eval_windows
from minillama.data.tokenized import TokenizedCorpus
from minillama.generate import sample_texts
from minillama.model import Llama
from minillama.parallel.distributed import DistributedContext, all_reduce_sum, broadcast_object, main_first
from minillama.parallel.parallelize import ParallelConfig, parallelize
from minillama.parallel.sharded_checkpoint import ShardedCheckpointer, is_sharded_checkpoint
from minillama.parallel.tensor_parallel import check_tensor_parallel
from minillama.train import step as steps
from minillama.train.config import TrainConfig, check_parallel_options
from minillama.train.trainer import Trainer, prepare_data
from minillama.train.training_checkpoint import Checkpointer, resolve_checkpoint


def check_resume_format(config: TrainConfig, sharded: bool) -> None:
    """Refuse early, with the command that works, to resume a checkpoint in the other format."""
    if not config.resume:
        return
    path = resolve_checkpoint(config.resume)
    if is_sharded_checkpoint(path) and config.parallel == "ddp":
        raise ValueError(f"{path} is a sharded (FSDP) checkpoint: resume it with --parallel fsdp, on any number of "
                         f"processes, or in one process without --parallel")
    if not is_sharded_checkpoint(path) and sharded:
        raise ValueError(f"{path} is a single-file checkpoint (one device or DDP): resume it with --parallel ddp or "
                         f"without --parallel")


class DistributedTrainer(Trainer):
    """This rank's trainer in the job ``ctx`` (every rank builds one). ``config.parallel`` is ``"ddp"`` or
    ``"fsdp"``; ``"none"`` runs one process through ``parallelize`` (FP8 on one GPU, or a sharded checkpoint
    resumed in one process). ``meta_init`` (default: FSDP on CUDA) builds the model on the meta device."""

    def __init__(self, config: TrainConfig, ctx: DistributedContext, *, data: TokenizedCorpus | None = None,
                 log: Callable[[str], None] | None = None, meta_init: bool | None = None) -> None:
        tp = config.tensor_parallel
        check_parallel_options(config.parallel, tp, world_size=ctx.world_size)
        check_tensor_parallel(get_preset(config.model), tp, config.seq_len)
        self.rank, self.world_size, self.tensor_parallel = ctx.rank, ctx.world_size, tp
        self.data_rank, self.data_world_size = ctx.rank // tp, ctx.world_size // tp  # the data-parallel view
        self.sharded = config.parallel == "fsdp"  # every rank saves and loads its part of each checkpoint
        resuming_sharded = bool(config.resume) and is_sharded_checkpoint(resolve_checkpoint(config.resume))
        self.sharded_checkpoints = self.sharded or (config.parallel == "none" and resuming_sharded)
        check_resume_format(config, self.sharded_checkpoints)
        self.meta_init = self.sharded and ctx.device.type == "cuda" if meta_init is None else meta_init
        config = config.replace(device=str(ctx.device))
        if not config.run_dir and not config.resume:  # one name for all ranks: rank 0's clock decides
            config = config.replace(run_dir=str(broadcast_object(config.with_run_dir().run_dir)))
        if data is None:
            with main_first():  # tokenizer training and tokenization fill a cache: one process per node does it
                data = prepare_data(config, progress=config.progress and ctx.local_rank == 0)
        super().__init__(config, data=data, log=log)

    def build_model(self) -> tuple[Llama, torch.nn.Module]:
        """``parallelize`` (tensor parallel, FP8, activation checkpointing, compile, DDP/FSDP); with ``meta_init``
        the model is built without memory, sharded, and only then materialized, shard by shard."""
        parallel = ParallelConfig.from_train_config(self.config, self.amp_dtype)
        if self.meta_init:
            with torch.device("meta"):
                model = Llama(self.model_config)
        else:
            model = Llama(self.model_config).to(self.device)
        train_model = parallelize(model, parallel)
        if self.meta_init:
            model.to_empty(device=self.device)
            model.init_weights()
        return model, train_model

    def build_checkpointer(self) -> Checkpointer:
        directory, keep = self.run_dir / "checkpoints", self.config.keep_last
        return ShardedCheckpointer(directory, keep_last=keep) if self.sharded_checkpoints else Checkpointer(
            directory, keep_last=keep)

    def mean_over_ranks(self, value: float) -> float:
        """The mean over ranks (every rank logs at the same steps)."""
        if self.world_size == 1:
            return value
        total = all_reduce_sum(torch.tensor([value], dtype=torch.float64, device=self.device))
        return float(total[0]) / self.world_size

    def stop_requested(self, stop) -> bool:
        """Whether a stop signal came to any rank: every rank must stop at the same step, so they vote."""
        flag = stop.signal_number is not None
        if self.world_size == 1:
            return flag
        votes = all_reduce_sum(torch.tensor([float(flag)], dtype=torch.float64, device=self.device))
        return bool(votes[0] > 0)

    def sum_over_ranks(self, totals: torch.Tensor, max_batches: int) -> torch.Tensor:
        """The evaluation sums of all ranks. Under FSDP every forward is a collective: a rank with fewer windows
        runs (and discards) extra ones; the ranks of a tensor-parallel group computed the same sums: count once."""
        if self.sharded:
            for _ in range(self._eval_batch_count(max_batches, 0) - self._eval_batch_count(max_batches,
                                                                                          self.data_rank)):
                with torch.no_grad(), steps.autocast(self.device, self.amp_dtype):
                    self.train_model(torch.zeros(1, self.config.seq_len, dtype=torch.long, device=self.device))
        if self.rank % self.tensor_parallel:
            totals.zero_()
        return all_reduce_sum(totals) if self.world_size > 1 else totals

    def _eval_batch_count(self, max_batches: int, rank: int) -> int:
        """Evaluation batches of data-parallel ``rank``; rank 0 has the most (windows are dealt out round-robin)."""
        windows = len(eval_windows(len(self.data.val), self.config.seq_len, rank, self.data_world_size))
        count = -(-windows // self.config.batch_size)
        return min(count, max_batches) if max_batches else count

    def samples(self) -> list[str]:
        """As the base class, on every rank (each FSDP forward needs all of them). A sharded model runs all
        ``sample_tokens`` steps (ranks must not stop at different steps); tensor parallelism splits the heads and
        the positions, so it samples by recomputing the sequence padded to a multiple of ``T`` (same tokens)."""
        c = self.config
        tp = {"use_cache": False, "pad_to_multiple": self.tensor_parallel} if self.tensor_parallel > 1 else {}
        with steps.autocast(self.device, self.amp_dtype):
            return sample_texts(self.model, self.data.tokenizer, c.sample_prompt, c.num_samples, c.sample_tokens,
                                temperature=c.temperature, top_k=c.top_k or None,
                                seed=c.seed * 1_000_003 + self.step, stop_at_end=not self.sharded, **tp)

    def describe(self) -> str:
        layout = (f"; {self.world_size} ranks = {self.data_world_size} data-parallel x {self.tensor_parallel} "
                  f"tensor-parallel" if self.tensor_parallel > 1 else "")
        return super().describe() + layout
