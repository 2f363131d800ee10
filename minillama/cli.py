"""The ``minillama`` command line: one subcommand per job, each owned by the stage that does the work.

This is the only module allowed to import every stage. Each command lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; the module is imported only when its command is parsed, so
``minillama --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable

from minillama.errors import UserError, is_disk_full

# name -> (module that owns the command, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("minillama.info", "show package versions, the devices found (CUDA/MPS/CPU) and threads"),
    "generate": ("minillama.generate", "sample text from a checkpoint (ours, Meta's or Hugging Face's)"),
    "train": ("minillama.parallel.cli", "train a model (defaults: the tiny preset on tinyshakespeare; "
              "--parallel ddp|fsdp under torchrun)"),
    "plot": ("minillama.train.plot", "plot loss, learning rate and throughput of a run folder"),
    "eval": ("minillama.evaluate.cli", "multiple-choice accuracy of a checkpoint, with a 95 percent interval"),
    "plan": ("minillama.plan", "memory per GPU, step time and feasibility of a training run (DDP/FSDP, no GPU needed)"),
    "curate": ("minillama.curate.cli", "clean a corpus: exact, near (MinHash LSH) and line dedup, filters, classifier"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; only the module of the command named in ``argv`` is imported."""
    from minillama import __version__

    parser = argparse.ArgumentParser(
        prog="minillama",
        description="Build and train Llama 3 from scratch. Run `minillama COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"minillama {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error, a user's mistake too")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = _command_in(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        # --debug after the command too (SUPPRESS: an absent flag does not reset the one given before it)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == wanted:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def _command_in(argv: list[str] | None) -> str | None:
    """The first argument that names a command, if any (options before it are top-level flags)."""
    for arg in sys.argv[1:] if argv is None else argv:
        if arg in COMMANDS:
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    return report_errors(args.command, lambda: module.run(args), debug=args.debug)


def report_errors(command: str, run: Callable[[], int | None], debug: bool = False) -> int:
    """Run a command; a person's mistake (and a full disk) becomes one line on stderr and status 2.

    Every entry point calls this (``minillama``, ``python -m minillama.parallel``), so all commands fail alike.
    Any other exception is a bug and keeps its traceback; ``debug`` shows the traceback of every error.
    """
    try:
        return int(run() or 0)
    except UserError as error:
        if debug:
            raise
        return _fail(command, str(error))
    except KeyboardInterrupt:  # outside a training loop, which stops at a step boundary by itself
        if debug:
            raise
        print(f"\nminillama {command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as error:
        if debug or not is_disk_full(error):
            raise
        where = f" in {error.filename}" if isinstance(error, OSError) and error.filename else ""
        return _fail(command, f"no space left on device{where}: free some space (or choose another folder) "
                              f"and run the command again; what was saved before is intact")


def _fail(command: str, message: str) -> int:
    """One line on stderr, status 2: what went wrong and what to do."""
    print(f"minillama {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
