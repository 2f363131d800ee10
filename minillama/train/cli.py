"""``minillama train``: train a model from a TOML config and command-line flags, then report bits per byte.

    minillama train                                   # the tiny preset on tinyshakespeare (configs/tiny.toml)
    minillama train --config configs/small-100m.toml  # another run
    minillama train --max-steps 300 --lr 1e-3         # any field of TrainConfig as a flag
    minillama train --resume runs/tiny-...            # continue a run where its last checkpoint left it

Precedence: ``TrainConfig`` defaults < the ``--config`` file < flags. ``--resume`` without ``--config`` starts from
the run's own ``config.toml``, so ``--resume RUN --max-steps 2000`` extends a run with nothing else changed. An
existing run folder is continued only with ``--resume`` (or started over with ``--overwrite``); Ctrl-C, SIGTERM and
SIGHUP save the current step and stop (exit status 128 + the signal's number), and ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from minillama.errors import UserError, as_user_error
from minillama.train.config import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False  # `--warmup-step 10` is a typo to report, not an abbreviation to guess
    parser.add_argument("--config", metavar="FILE", help="a TOML file of TrainConfig fields (see configs/)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    add_config_arguments(parser)


def run(args: argparse.Namespace, make_trainer: Callable | None = None) -> int:
    """The command. ``make_trainer(config)`` builds the trainer (default: one process, :class:`Trainer`); chapter 9's
    launcher passes one that joins a torchrun job and wires DDP or FSDP."""
    from minillama.train.guard import TrainingDiverged
    from minillama.train.training_checkpoint import resolve_checkpoint

    started = time.perf_counter()
    with as_user_error(ValueError, OSError):
        config_file = args.config
        if not config_file and getattr(args, "resume", ""):
            run_config = resolve_checkpoint(args.resume).parent.parent / "config.toml"
            config_file = run_config if run_config.is_file() else None
        config = config_from_args(args, config_file)
        if config.resume and "run_dir" not in vars(args):  # the run continues in the folder it is in now
            config = config.replace(run_dir="")
    if args.print_config:
        print(config.to_toml(), end="")
        return 0

    if config.parallel != "none" and make_trainer is None:
        raise UserError(f"--parallel {config.parallel} runs one process per device under torchrun: "
                        f"torchrun --nproc_per_node N -m minillama.parallel train --parallel {config.parallel} ...")
    if make_trainer is None:
        from minillama.train.trainer import Trainer as make_trainer

    with as_user_error(ValueError, OSError):
        trainer = make_trainer(config)
    try:
        summary = trainer.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, mid-step; the last checkpoint is the place to go back to
        print(f"\ninterrupted at once at step {trainer.step}, without saving; continue from the last checkpoint "
              f"with: minillama train --resume {trainer.run_dir}", file=sys.stderr)
        return 128 + signal.SIGINT
    except TrainingDiverged as error:
        print(f"minillama train: {error}", file=sys.stderr)
        return 1
    if trainer.stopped_by:
        if trainer.is_main:
            print(f"\n{trainer.stopped_by} at step {trainer.step}: saved the checkpoint of this step. Continue with: "
                  f"minillama train --resume {trainer.run_dir}", file=sys.stderr)
        return 128 + signal.Signals[trainer.stopped_by]
    if trainer.is_main:  # under torchrun every rank gets here; one reports
        _plot(trainer.run_dir)
        _report(trainer, summary, time.perf_counter() - started)
    return 0


def _plot(run_dir: Path) -> None:
    from minillama.train.plot import plot_run

    plot_run(run_dir)


def _report(trainer, summary: dict, wall: float) -> None:
    """The end of the run, on stdout: the numbers that matter and the last samples."""
    samples = trainer.last_samples or (trainer.samples() if trainer.config.num_samples else [])
    print(f"\n== {trainer.config.model} on {trainer.config.corpus}: {summary['step']:,} steps, "
          f"{summary['tokens']:,} tokens, {summary['elapsed_s']:.0f} s of training, {wall:.0f} s in all")
    if "val_bpb" in summary:
        print(f"val loss {summary['val_loss']:.4f} nats/token, val bits per byte {summary['val_bpb']:.3f}")
    for i, text in enumerate(samples):
        print(f"\n-- sample {i + 1} --\n{text}")
    print(f"\nrun folder: {trainer.run_dir} (metrics.jsonl, samples.txt, plots/, checkpoints/)")
