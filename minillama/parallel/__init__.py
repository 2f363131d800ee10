"""Chapter 9: training on many GPUs with ``torch.distributed``, applied to the single-device model from outside.

- :mod:`~minillama.parallel.distributed`: join a ``torchrun`` job (ranks, backend, device per local rank), rank-0
  helpers;
- :mod:`~minillama.parallel.tensor_parallel`: Megatron-style tensor parallelism with sequence parallelism, as
  ``DTensor`` layouts;
- :mod:`~minillama.parallel.parallelize`: ``parallelize(model, ParallelConfig(...))``: tensor parallelism ->
  activation checkpointing -> ``torch.compile`` -> FSDP2 ``fully_shard`` per block (or DDP), on a ``dp x tp`` mesh;
- :mod:`~minillama.parallel.sharded_checkpoint`: sharded checkpoints through ``torch.distributed.checkpoint``,
  reloadable on any number of ranks;
- :mod:`~minillama.parallel.training`: ``DistributedTrainer``, the chapter-7 ``Trainer`` subclassed for DDP/FSDP;
- :mod:`~minillama.parallel.cli`: ``minillama train --parallel ddp|fsdp [--tensor-parallel T]`` under ``torchrun``.
"""
