"""``minillama plot RUN_DIR``: the loss, learning-rate and throughput curves of a run, as PNG files.

The figures are drawn from ``metrics.jsonl`` alone, so they can be redrawn at any time, also while the run is going,
and the functions that draw them (``plot_loss``, ``plot_lr``, ``plot_throughput``) take a matplotlib ``Axes`` so the
chapter can put them in a notebook. ``matplotlib.figure.Figure`` is used instead of ``pyplot``: no GUI backend is
touched, which keeps the command safe on servers and leaves a notebook's backend alone.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from minillama.train.metrics import read_metrics


def _series(records: list[dict[str, Any]], kind: str, key: str) -> tuple[list[int], list[float]]:
    rows = [(r["step"], r[key]) for r in records if r.get("kind") == kind and r.get(key) is not None]
    return [step for step, _ in rows], [value for _, value in rows]


def plot_loss(records: list[dict[str, Any]], ax) -> None:
    """Training loss (each logged step) and validation loss (each evaluation) against the step."""
    steps, loss = _series(records, "train", "loss")
    ax.plot(steps, loss, label="train loss", color="tab:blue", linewidth=1)
    steps, val = _series(records, "eval", "val_loss")
    ax.plot(steps, val, "o-", label="val loss", color="tab:orange", markersize=4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")


def plot_lr(records: list[dict[str, Any]], ax) -> None:
    steps, lr = _series(records, "train", "lr")
    ax.plot(steps, lr, color="tab:purple")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)


def plot_throughput(records: list[dict[str, Any]], ax) -> None:
    """Tokens per second, and MFU (%) on a second axis when the device's peak is known."""
    steps, rate = _series(records, "train", "tokens_per_s")
    ax.plot(steps, rate, color="tab:red")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("throughput (tokens per second)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    steps, utilization = _series(records, "train", "mfu")
    if utilization:
        twin = ax.twinx()
        twin.plot(steps, [100 * u for u in utilization], color="tab:gray", alpha=0.6)
        twin.set_ylabel("MFU (% of peak)")
        twin.set_ylim(bottom=0)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``loss.png``, ``lr.png`` and ``throughput.png`` for a run (into ``RUN_DIR/plots`` by default)."""
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl: is it a run folder of `minillama train`?")
    records = read_metrics(run_dir / "metrics.jsonl")
    out_dir = Path(out_dir) if out_dir else run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw, title in [("loss", lambda ax: plot_loss(records, ax), f"loss ({summary_line(records)})"),
                              ("lr", lambda ax: plot_lr(records, ax), "learning-rate schedule"),
                              ("throughput", lambda ax: plot_throughput(records, ax), "throughput")]:
        figure = Figure(figsize=(7, 4), layout="constrained")
        ax = figure.add_subplot()
        draw(ax)
        ax.set_title(f"{run_dir.name}\n{title}", fontsize=10)
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def summary_line(records: list[dict[str, Any]]) -> str:
    """The last evaluation of a run in one line (for the command's output)."""
    evals = [r for r in records if r.get("kind") == "eval"]
    if not evals:
        return "no evaluation recorded yet"
    last = evals[-1]
    bpb = last.get("val_bpb", math.nan)
    return f"step {last['step']}: val loss {last['val_loss']:.3f}, val bits per byte {bpb:.3f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `minillama train`")
    parser.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: RUN_DIR/plots)")


def run(args: argparse.Namespace) -> int:
    import sys

    try:
        paths = plot_run(args.run_dir, args.out)
    except FileNotFoundError as error:
        print(f"minillama plot: {error}", file=sys.stderr)
        return 2
    print(summary_line(read_metrics(Path(args.run_dir) / "metrics.jsonl")))
    for path in paths:
        print(path)
    return 0
