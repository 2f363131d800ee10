"""``minillama eval``: score a checkpoint on a multiple-choice task, print accuracy with its 95% interval.

    minillama eval runs/tiny-tinyshakespeare-...          # a run folder: its latest checkpoint
    minillama eval CHECKPOINT --task arithmetic --shots 5 --limit 100
    minillama eval CHECKPOINT --task my_items.jsonl       # any JSONL of {id, context, choices, gold}

Writes ``items.jsonl`` (one record per item: log-likelihoods, picks, correctness) and ``summary.json`` into
``--out`` (default: ``eval/<task>-<shots>shot`` inside the checkpoint folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minillama.atomic import atomic_write
from minillama.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN",
                        help="a checkpoint folder (ours, Hugging Face's or Meta's) or a run folder (its latest)")
    parser.add_argument("--task", default="shakespeare-next-line",
                        help="shakespeare-next-line, arithmetic, hellaswag, arc-easy, arc-challenge, piqa, or a "
                             ".jsonl file of items (default: %(default)s)")
    parser.add_argument("--shots", type=int, default=0, help="solved examples before each question (default: 0)")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N items; 0 = all (default: 0)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the few-shot draws (default: 1234)")
    parser.add_argument("--tokenizer", default="auto",
                        help="'llama3', a tokenizer.model path, or auto: the checkpoint's own (default: auto)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for PyTorch; 0 = one per core. One is the fastest for small models "
                             "(default: 1)")
    parser.add_argument("--out", default="", help="folder for items.jsonl and summary.json")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def resolve_model_folder(path: str) -> Path:
    """A checkpoint folder from a checkpoint or a run folder (its latest ``checkpoints/step_N``)."""
    folder = Path(path).expanduser()
    if (folder / "config.json").is_file() or (folder / "params.json").is_file():
        return folder
    steps = sorted((folder / "checkpoints").glob("step_*"), key=lambda p: int(p.name.removeprefix("step_")))
    if steps:
        return steps[-1]
    if not folder.exists():
        raise UserError(f"{path} does not exist: give a checkpoint folder or a run folder")
    raise UserError(f"{path} is neither a checkpoint folder (no config.json) nor a run folder (no checkpoints/step_N)")


def run(args: argparse.Namespace) -> int:
    import torch

    from minillama.evaluate.run import evaluate_task
    from minillama.evaluate.tasks import get_task
    from minillama.generate import load_tokenizer
    from minillama.weights import load_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.shots < 0 or args.limit < 0:
        raise UserError(f"--shots and --limit must be >= 0, got {args.shots} and {args.limit}")
    task = get_task(args.task)
    folder = resolve_model_folder(args.checkpoint)
    model = load_checkpoint(folder, device=args.device)
    try:
        tokenizer = load_tokenizer(args.tokenizer, folder, model.config.vocab_size)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    own = folder / "tokenizer.model"
    if args.tokenizer != "auto" and own.is_file() and hasattr(tokenizer, "fingerprint"):
        if load_tokenizer("auto", folder, model.config.vocab_size).fingerprint() != tokenizer.fingerprint():
            raise UserError(f"--tokenizer {args.tokenizer} is not the tokenizer this model was trained with "
                            f"({own}): its ids would mean other text. Leave --tokenizer out to use the model's own")
    try:
        records, summary = evaluate_task(model, tokenizer, task, shots=args.shots, seed=args.seed,
                                         limit=args.limit or None, progress=args.progress)
    except ValueError as error:
        raise UserError(str(error)) from None
    out = Path(args.out) if args.out else folder / "eval" / f"{task.name}-{args.shots}shot"
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "items.jsonl", "".join(json.dumps(record) + "\n" for record in records))
    _write(out / "summary.json", json.dumps({"checkpoint": str(folder), **summary}, indent=2) + "\n")
    print(f"{task.name}, {args.shots}-shot, {summary['n_items']} items (chance {summary['chance']:.3f}):")
    for metric in ("acc", "acc_norm", "acc_bytes", "acc_mutual_info"):
        if metric in summary:
            m = summary[metric]
            print(f"  {metric:<16} {m['value']:.3f}  95% interval [{m['low']:.3f}, {m['high']:.3f}]")
    print(f"per-item results: {out / 'items.jsonl'}; summary: {out / 'summary.json'}", file=sys.stderr)
    return 0


def _write(path: Path, text: str) -> None:
    """Write atomically (:func:`~minillama.atomic.atomic_write`)."""
    atomic_write(path, text)
