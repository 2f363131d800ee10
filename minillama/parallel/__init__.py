"""Chapter 9: training on many GPUs with ``torch.distributed``, applied to the single-device model from outside.

- :mod:`~minillama.parallel.distributed`: join a ``torchrun`` job (ranks, backend, device per local rank), rank-0
  helpers;
- :mod:`~minillama.parallel.parallelize`: ``parallelize(model, ParallelConfig(...))``: activation checkpointing ->
  ``torch.compile`` -> FSDP2 ``fully_shard`` per block (or DDP);
- :mod:`~minillama.parallel.checkpoint`: sharded checkpoints through ``torch.distributed.checkpoint``, reloadable on
  any number of ranks;
- :mod:`~minillama.parallel.training`: the chapter-7 ``Trainer`` wired for DDP/FSDP;
- :mod:`~minillama.parallel.cli`: ``minillama train --parallel ddp|fsdp`` under ``torchrun``.
"""
