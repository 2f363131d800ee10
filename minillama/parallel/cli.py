"""``minillama train`` with ``--parallel ddp|fsdp``: the chapter-7 command, launched once per GPU by ``torchrun``.

    torchrun --standalone --nproc_per_node 8 -m minillama train --config configs/llama3.1-8b-8xh100.toml
    torchrun --standalone --nproc_per_node 2 -m minillama train --parallel fsdp --device cpu --model nano
    minillama train --resume runs/llama3.1-8b-...     # a sharded run continues in one process too

The options are exactly ``minillama train`` 's (``--parallel`` is a ``TrainConfig`` field); this module only
picks the trainer: under torchrun, with ``--parallel`` or ``--float8``, or to resume a sharded checkpoint it joins
the process group (:mod:`minillama.parallel.distributed`) and builds a
:class:`~minillama.parallel.training.DistributedTrainer`; otherwise chapter 7's single-process ``Trainer``.
``scripts/`` has the multi-node launch (SLURM) and the one-node launch.
"""

from __future__ import annotations

import argparse

from minillama.errors import as_user_error
from minillama.train import cli as train_cli
from minillama.train.config import TrainConfig, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_cli.add_arguments(parser)


def make_trainer(config: TrainConfig):
    """The trainer for this process: chapter 7's :class:`~minillama.train.trainer.Trainer`, or, under torchrun,
    with ``--parallel``, ``--float8`` or to resume a sharded checkpoint, the :class:`DistributedTrainer`."""
    from minillama.parallel.distributed import init_distributed, launched_by_torchrun
    from minillama.parallel.sharded_checkpoint import is_sharded_checkpoint
    from minillama.parallel.training import DistributedTrainer
    from minillama.train.trainer import Trainer
    from minillama.train.training_checkpoint import resolve_checkpoint

    resuming_sharded = bool(config.resume) and is_sharded_checkpoint(resolve_checkpoint(config.resume))
    needs_group = config.parallel != "none" or launched_by_torchrun() or resuming_sharded
    if not needs_group and not config.float8:
        return Trainer(config)
    ctx = init_distributed(config.device, group_of_one=needs_group and config.parallel != "none")
    return DistributedTrainer(config, ctx)


def prepare(args: argparse.Namespace) -> int:
    """Tokenize the corpus of the config that ``args`` describe (one process, before a launch)."""
    from minillama.parallel.training import prepare_data

    with as_user_error(ValueError, OSError):
        data = prepare_data(config_from_args(args, args.config))
    print(f"{len(data.train):,} train and {len(data.val):,} validation tokens of {data.source.key}, tokenizer "
          f"{data.tokenizer_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    from minillama.parallel.distributed import destroy_distributed

    try:
        return train_cli.run(args, make_trainer=make_trainer)
    finally:
        destroy_distributed()
