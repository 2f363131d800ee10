"""The training runs behind chapter 11: IsoFLOP sweeps, an overtrained model, and the architecture ablations.

Every run is :func:`train_run`: a tiny Llama trained for a fixed number of tokens on tinyshakespeare (our BPE,
512 ids, 64-token windows) with a cosine schedule as long as the run (Chinchilla's point: a schedule longer than the
run inflates the loss of short runs), then evaluated on the same validation tokens. ``python -m
minillama.scaling_runs isoflop|overtrain|ablations`` records them as JSON in ``minillama/recorded/`` (the chapter reads
those files); ``--quick`` is the small version the chapter and the tests run live.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from minillama.atomic import atomic_write
from minillama.config import ModelConfig
from minillama.data.loader import TrainLoader, eval_batches
from minillama.data.tokenized import TokenizedCorpus, prepare_corpus
from minillama.errors import UserError
from minillama.model import Llama
from minillama.train.config import TrainConfig
from minillama.train.evaluate import loss_sums, metrics_from_sums
from minillama.train.schedule import lr_at
from minillama.train.step import train_step
from minillama.train.trainer import build_optimizer, seed_everything

RECORDED = Path(__file__).parent / "recorded"
SEQ_LEN = 64
BATCH_SIZE = 16
VOCAB_SIZE = 512
EVAL_BATCHES = 24  # 24 x 16 windows x 64 tokens = 24,576 validation tokens, the same for every run

# (dim, n_layers, n_heads): head_dim 16 (12 for dim 24), depth and width growing together.
LADDER: list[tuple[int, int, int]] = [(16, 1, 1), (24, 1, 2), (32, 1, 2), (48, 2, 3), (64, 2, 4), (80, 3, 5),
                                      (96, 3, 6), (128, 4, 8), (160, 5, 10)]


def ladder_config(dim: int, n_layers: int, n_heads: int, **switches: Any) -> ModelConfig:
    """A model of the sweep: tied embeddings, ``multiple_of=16``, 512 ids, 64 positions; ``switches`` are the
    ablation fields of :class:`~minillama.config.ModelConfig`."""
    return ModelConfig(dim=dim, n_layers=n_layers, n_heads=n_heads, vocab_size=VOCAB_SIZE, multiple_of=16,
                       rope_theta=10000.0, max_seq_len=SEQ_LEN, tie_embeddings=True, **switches)


def load_corpus() -> TokenizedCorpus:
    """tinyshakespeare through the package's loader and a 512-id BPE tokenizer (both cached)."""
    return prepare_corpus("tinyshakespeare", "bpe", VOCAB_SIZE)


def params_and_flops(config: ModelConfig) -> tuple[int, int]:
    """``N`` (parameters that multiply activations: everything but the embedding lookup) and the training FLOPs
    per token at the sweep's context length (``ModelConfig.flops_per_token``: 6N plus attention)."""
    return config.num_params(embeddings=False), config.flops_per_token(SEQ_LEN)


def validation_loss(model: Llama, data: TokenizedCorpus) -> float:
    """Mean cross-entropy (nats per token) on the first ``EVAL_BATCHES`` batches of the validation split (the
    trainer's :func:`~minillama.train.evaluate.loss_sums`)."""
    batches = eval_batches(data.val, BATCH_SIZE, SEQ_LEN, max_batches=EVAL_BATCHES)
    return metrics_from_sums(loss_sums(model, batches, torch.from_numpy(data.token_bytes())))["val_loss"]


def train_run(config: ModelConfig, data: TokenizedCorpus, tokens: int, *, lr: float = 3e-3, seed: int = 0,
              curve_points: int = 0) -> dict[str, Any]:
    """Train a fresh ``config`` model on ``tokens`` training tokens; return N, D, C, the validation loss, the time.

    The only place chapter 11 calls the trainer: its ``TrainConfig`` (schedule), ``build_optimizer`` (AdamW, decay on
    matrices) and ``train_step`` (clip, step) on a model built from a ``ModelConfig`` rather than a preset name.
    ``curve_points > 0`` also records the validation loss at that many evenly spaced steps (the ablation curves).
    """
    steps = max(1, round(tokens / (BATCH_SIZE * SEQ_LEN)))
    train_config = TrainConfig(seq_len=SEQ_LEN, batch_size=BATCH_SIZE, max_steps=steps, lr=lr, schedule="cosine",
                               warmup_steps=max(1, steps // 20), min_lr_ratio=0.1, beta2=0.95, device="cpu",
                               seed=seed)
    seed_everything(seed)
    model = Llama(config)
    optimizer = build_optimizer(model, train_config, torch.device("cpu"))
    loader = TrainLoader(data.train, BATCH_SIZE, SEQ_LEN, seed=seed)
    checkpoints = {round(steps * (i + 1) / curve_points) for i in range(curve_points)} if curve_points else set()
    curve, start = [], time.process_time()
    for step in range(steps):
        result = train_step(model, optimizer, [next(loader)], lr=lr_at(step, train_config), grad_clip=1.0)
        if not math.isfinite(result.loss):
            raise RuntimeError(f"{config} diverged at step {step + 1}")
        if step + 1 in checkpoints:
            curve.append([(step + 1) * BATCH_SIZE * SEQ_LEN, validation_loss(model, data)])
    cpu_s = time.process_time() - start
    n_params, flops_per_token = params_and_flops(config)
    trained = steps * BATCH_SIZE * SEQ_LEN
    run = {"dim": config.dim, "n_layers": config.n_layers, "n_heads": config.n_heads, "N": n_params, "D": trained,
           "C": flops_per_token * trained, "epochs": trained / len(data.train),
           "val_loss": curve[-1][1] if curve else validation_loss(model, data), "cpu_s": round(cpu_s, 2)}
    if curve:
        run["curve"] = curve
    return run


# --- the recorded experiments ------------------------------------------------------------------------------------


# The recorded sweep: the widths trained at each budget, chosen to bracket its minimum (about 4 minutes of CPU).
ISOFLOP_WIDTHS: dict[float, list[int]] = {1e11: [16, 24, 32, 48, 64], 3e11: [16, 24, 32, 48, 64, 80, 96],
                                          1e12: [32, 48, 64, 80]}


def isoflop_plan(budgets: list[float], min_steps: int = 100, max_epochs: float = 12.0,
                 train_tokens: int = 492_981) -> list[tuple[float, tuple[int, int, int]]]:
    """(budget, ladder rung) pairs: the recorded widths for the budgets of ``ISOFLOP_WIDTHS``; for any other budget,
    every rung whose run has at least ``min_steps`` steps and sees the training split at most ``max_epochs`` times."""
    plan = []
    for budget in budgets:
        if budget in ISOFLOP_WIDTHS:
            plan += [(budget, rung) for rung in LADDER if rung[0] in ISOFLOP_WIDTHS[budget]]
            continue
        for rung in LADDER:
            tokens = budget / params_and_flops(ladder_config(*rung))[1]
            if tokens >= min_steps * BATCH_SIZE * SEQ_LEN and tokens <= max_epochs * train_tokens:
                plan.append((budget, rung))
    return plan


def isoflop(budgets: list[float], data: TokenizedCorpus, log=print, save=None) -> list[dict[str, Any]]:
    """Train every rung of :func:`isoflop_plan` at every budget (Chinchilla's approach 2); ``save(runs)`` is called
    after each run, so that an interrupted sweep keeps what it has done."""
    runs = []
    for budget, rung in isoflop_plan(budgets, train_tokens=len(data.train)):
        config = ladder_config(*rung)
        run = train_run(config, data, round(budget / params_and_flops(config)[1]))
        run["budget"] = budget
        runs.append(run)
        log(f"C={budget:.0e} dim={rung[0]} N={run['N']:,} D={run['D']:,} loss={run['val_loss']:.4f} "
            f"({run['cpu_s']:.0f} s CPU)")
        if save is not None:
            save(runs)
    return runs


ABLATIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "no RMSNorm": {"norm_type": "none"},
    "post-norm": {"norm_position": "post"},
    "NoPE": {"position_encoding": "none"},
    "SiLU MLP": {"ffn_type": "silu"},
}


def ablations(data: TokenizedCorpus, rung: tuple[int, int, int] = (64, 2, 4), tokens: int = 500_000,
              log=print) -> list[dict[str, Any]]:
    """One run per switch at the same size and tokens, with its validation-loss curve."""
    runs = []
    for name, switches in ABLATIONS.items():
        run = train_run(ladder_config(*rung, **switches), data, tokens, curve_points=10)
        run["ablation"], run["switches"] = name, switches
        runs.append(run)
        log(f"{name}: N={run['N']:,} loss={run['val_loss']:.4f} ({run['cpu_s']:.0f} s CPU)")
    return runs


def load_recorded(experiment: str) -> dict[str, Any]:
    """A recorded experiment (``isoflop``, ``overtrain`` or ``ablations``), read from the package data."""
    return json.loads(files("minillama.recorded").joinpath(f"scaling_{experiment}.json").read_text())


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (:func:`~minillama.atomic.atomic_write`)."""
    atomic_write(path, json.dumps(payload, indent=1) + "\n")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minillama.scaling_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=("isoflop", "overtrain", "ablations"))
    parser.add_argument("--budgets", default="1e11,3e11,1e12", help="isoflop: compute budgets in FLOPs")
    parser.add_argument("--rung", default="", help="overtrain/ablations: dim,n_layers,n_heads of the model "
                        "(default 16,1,1 / 64,2,4)")
    parser.add_argument("--tokens", type=float, default=0, help="overtrain/ablations: training tokens "
                        "(default 1e7 / 5e5)")
    parser.add_argument("--out", default="", help="output JSON (default: minillama/recorded/scaling_<experiment>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        budgets = [float(b) for b in args.budgets.split(",")]
        default_rung, default_tokens = {"overtrain": ("16,1,1", 1e7)}.get(args.experiment, ("64,2,4", 5e5))
        rung = tuple(int(x) for x in (args.rung or default_rung).split(","))
        tokens = int(args.tokens or default_tokens)
    except ValueError as error:
        raise UserError(f"--budgets and --rung take comma-separated numbers: {error}") from None
    data = load_corpus()
    started = time.process_time()
    command = "python -m minillama.scaling_runs " + " ".join(argv if argv is not None else sys.argv[1:])

    def save(runs: list[dict[str, Any]]) -> None:
        payload = {"experiment": args.experiment, "command": command, "seq_len": SEQ_LEN, "batch_size": BATCH_SIZE,
                   "vocab_size": VOCAB_SIZE, "corpus": "tinyshakespeare", "train_tokens": len(data.train),
                   "torch": torch.__version__, "cpu_s": round(time.process_time() - started, 1), "runs": runs}
        write_json(Path(args.out or RECORDED / f"scaling_{args.experiment}.json"), payload)

    if args.experiment == "isoflop":
        save(isoflop(budgets, data, log, save))
    elif args.experiment == "overtrain":
        save([train_run(ladder_config(*rung), data, tokens, curve_points=10)])
    else:
        save(ablations(data, rung, tokens, log=log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
