"""The chapter-7 ``Trainer``, spread over the ranks of a ``torchrun`` job: one function that wires the pieces.

The trainer was written with the seams this needs (``rank``, ``world_size``, ``wrap_model``, ``all_reduce``,
``checkpointer``, ``sharded``); :func:`distributed_trainer` fills them:

* **device**: ``cuda:LOCAL_RANK`` (one GPU per process) or the CPU;
* **data**: each node's local rank 0 tokenizes the corpus into the cache first, the others then read it; the
  loader deals each rank its own slice of every global batch (``minillama.data.loader``), so ``W`` ranks with
  ``batch_size`` B train on the same global batch as one process with ``W * B``. With tensor parallelism the
  ``T`` ranks of a group read the same batch: the data is dealt over the ``W / T`` data-parallel ranks;
* **model**: :func:`~minillama.parallel.parallelize.parallelize` (tensor parallelism, activation checkpointing,
  compile, DDP or FSDP);
  under FSDP on GPUs the model is built on the meta device and each rank materializes only its shards, so a 70B
  model never exists whole in any one memory;
* **logging**: only rank 0 prints and writes ``metrics.jsonl``; losses and evaluation sums are averaged over ranks;
* **checkpoints**: DDP writes the single-device format from rank 0 (every rank holds all of it); FSDP writes a
  sharded checkpoint from every rank (:class:`~minillama.parallel.sharded_checkpoint.ShardedCheckpointer`).
"""

from __future__ import annotations

from collections.abc import Callable

from minillama.config import get_preset
from minillama.data.tokenized import TokenizedCorpus, prepare_corpus
from minillama.parallel.distributed import DistributedContext, all_reduce_sum, broadcast_object, main_first
from minillama.parallel.parallelize import ParallelConfig, parallelize
from minillama.parallel.sharded_checkpoint import ShardedCheckpointer, is_sharded_checkpoint
from minillama.parallel.tensor_parallel import check_tensor_parallel
from minillama.train.config import TrainConfig
from minillama.train.trainer import Trainer, autocast_dtype, default_run_dir
from minillama.train.training_checkpoint import resolve_checkpoint


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


def prepare_data(config: TrainConfig, progress: bool = True) -> TokenizedCorpus:
    """The tokenizer and token shards of ``config``'s corpus, from the cache or made now (the trainer's own call).

    ``python -m minillama.parallel prepare --config FILE`` runs it once before a multi-node launch, so that no
    rank waits at a barrier while another tokenizes billions of tokens.
    """
    return prepare_corpus(config.corpus, config.tokenizer, get_preset(config.model).vocab_size, config.val_fraction,
                          progress=progress)


def single_device_wrapper(config: TrainConfig, device) -> Callable:
    """The ``wrap_model`` of a one-device run that needs this chapter's ``parallelize`` (FP8 training): FP8, then
    activation checkpointing and compile, without data parallelism."""
    parallel = ParallelConfig.from_train_config(config, autocast_dtype(config.dtype, device))
    return lambda model, _config: parallelize(model, parallel)


def distributed_trainer(config: TrainConfig, ctx: DistributedContext, *, log: Callable[[str], None] | None = None
                        ) -> Trainer:
    """A :class:`~minillama.train.trainer.Trainer` for this rank of the job ``ctx`` (every rank calls it).

    ``config.parallel`` is ``"ddp"`` or ``"fsdp"`` (``"none"`` in one process without a process group gives the
    plain trainer; a sharded checkpoint to resume then keeps its format).
    """
    if config.parallel == "none" and ctx.world_size > 1:
        raise ValueError(f"{ctx.world_size} processes with --parallel none would train {ctx.world_size} identical "
                         f"copies of one run; use --parallel ddp or --parallel fsdp")
    tp = config.tensor_parallel
    if ctx.world_size % tp:
        raise ValueError(f"{ctx.world_size} processes cannot form tensor-parallel groups of {tp}: launch a multiple "
                         f"of {tp} processes (torchrun --nproc_per_node), or pass a --tensor-parallel that divides "
                         f"{ctx.world_size} (a sharded checkpoint resumes on any layout)")
    check_tensor_parallel(get_preset(config.model), tp, config.seq_len)
    config = config.replace(device=str(ctx.device))
    resuming_sharded = bool(config.resume) and is_sharded_checkpoint(resolve_checkpoint(config.resume))
    sharded = config.parallel == "fsdp" or (config.parallel == "none" and resuming_sharded)
    check_resume_format(config, sharded)
    if not config.run_dir and not config.resume:  # one name for all ranks: rank 0's clock decides
        config = config.replace(run_dir=str(broadcast_object(default_run_dir(config))))

    with main_first():  # tokenizer training and tokenization fill a cache: one process per node does it
        data = prepare_data(config, progress=config.progress and ctx.local_rank == 0)

    parallel = ParallelConfig.from_train_config(config, autocast_dtype(config.dtype, ctx.device))
    run_dir = config.run_dir or str(resolve_checkpoint(config.resume).parent.parent)
    checkpointer = (ShardedCheckpointer(f"{run_dir}/checkpoints", keep_last=config.keep_last) if sharded else None)
    return Trainer(config, rank=ctx.rank, world_size=ctx.world_size,
                   wrap_model=lambda model, _config: parallelize(model, parallel),
                   all_reduce=all_reduce_sum if ctx.world_size > 1 else None, checkpointer=checkpointer,
                   data=data, log=log, sharded=config.parallel == "fsdp",
                   meta_init=config.parallel == "fsdp" and ctx.device.type == "cuda", tensor_parallel=tp)
