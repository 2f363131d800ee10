"""``python -m minillama.parallel train|prepare [options]``: the distributed trainer's entry point.

- ``train``: ``minillama train`` with ``--parallel ddp|fsdp`` support (see :mod:`minillama.parallel.cli`); under
  ``torchrun`` each process runs it as one rank: ``torchrun --nproc_per_node 8 -m minillama.parallel train ...``;
- ``prepare``: tokenize the corpus of a config into the cache, once, before a multi-node launch.
"""

import argparse
import sys

from minillama.cli import report_errors
from minillama.parallel import cli

parser = argparse.ArgumentParser(prog="python -m minillama.parallel",
                                 description="Train with DDP or FSDP under torchrun (or in one process).")
commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
cli.add_arguments(commands.add_parser("train", help="train a model (the options of `minillama train`)"))
cli.add_arguments(commands.add_parser("prepare", help="tokenize the corpus of a config into the cache, then exit"))
args = parser.parse_args()
sys.exit(report_errors(args.command, lambda: cli.run(args) if args.command == "train" else cli.prepare(args)))
