"""``minillama plan``'s output: a table of plans, JSON, and the command line.

    minillama plan --model llama3.1-70b --gpus 64 --gpu h100      # every layout, one row each
    minillama plan --model llama3.1-405b --gpus 16384 --tp 8 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from minillama.config import PRESETS, get_preset
from minillama.errors import UserError
from minillama.gpus import GPUS
from minillama.plan.communication import INTERNODE_GBPS, TrainingPlan, plan_grid


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f}"


def plan_label(plan: TrainingPlan) -> str:
    """A plan's column name: ``"FSDP"``, ``"DDP + AC"``, ``"FSDP x TP8 + AC"``."""
    tensor_parallel = f" x TP{plan.tensor_parallel}" if plan.tensor_parallel > 1 else ""
    return plan.parallel.upper() + tensor_parallel + (" + AC" if plan.activation_checkpointing else "")


def format_plans(plans: list[TrainingPlan]) -> str:
    """A side-by-side table of plans that share a model, GPU count, tensor-parallel degree and batch (the output of
    ``minillama plan``)."""
    first = plans[0]
    spec = GPUS[first.gpu]
    sequences = first.batch_tokens // first.seq_len
    tensor_parallel = any(p.tensor_parallel > 1 for p in plans)
    lines = [
        f"{first.model}: {first.n_params / 1e9:,.2f} B parameters on {first.gpus:,} x {spec.name} "
        f"({spec.memory_gb:g} GB, {spec.peak_tflops:g} TFLOP/s {spec.compute_dtype} dense)",
    ]
    if tensor_parallel:
        lines.append(f"mesh: {first.data_parallel:,} data-parallel ranks (FSDP) x {first.tensor_parallel} "
                     f"tensor-parallel GPUs (with sequence parallelism)")
    lines += [
        f"batch: {first.batch_tokens:,} tokens = {sequences:,} sequences of {first.seq_len:,}; "
        f"per {'data-parallel rank' if tensor_parallel else 'GPU'} {first.micro_batch} x {first.grad_accum_steps} "
        f"accumulation step(s)",
        "",
    ]
    names = [plan_label(p) for p in plans]
    width = max(12, *(len(n) + 2 for n in names))
    row = "{:<38}" + f"{{:>{width}}}" * len(plans)
    lines.append(row.format("memory per GPU (GB)", *names))
    for label, key in (("weights (bf16, 2 B/param)", "weights"), ("gradients (bf16, 2 B/param)", "gradients"),
                       ("optimizer (fp32 master+m+v, 12 B)", "optimizer"), ("FSDP unsharded buffers", "fsdp_buffers"),
                       ("activations", "activations"), ("total", "total")):
        lines.append(row.format("  " + label, *(_gb(getattr(p.memory, key)) for p in plans)))
    lines.append(row.format(f"fits in {spec.memory_gb:g} GB?", *("yes" if p.fits else "NO" for p in plans)))
    if tensor_parallel:
        lines.append(row.format("DP communication per step (GB/GPU)", *(_gb(p.comm_bytes_per_step) for p in plans)))
        lines.append(row.format("DP communication time per step (s)", *(f"{p.comm_time_s:,.1f}" for p in plans)))
        lines.append(row.format("TP communication per step (GB/GPU)",
                                *(_gb(p.tensor_parallel_comm_bytes_per_step) for p in plans)))
        lines.append(row.format("TP communication time per step (s)",
                                *(f"{p.tensor_parallel_comm_time_s:,.1f}" for p in plans)))
    else:
        lines.append(row.format("communication per step (GB/GPU)", *(_gb(p.comm_bytes_per_step) for p in plans)))
        lines.append(row.format("communication time per step (s)", *(f"{p.comm_time_s:,.1f}" for p in plans)))
    lines.append(row.format("hardware utilization needed", *(f"{p.hardware_utilization:.0%}" for p in plans)))
    lines += [
        "",
        f"at {first.mfu:.0%} MFU: {first.flops_per_token / 1e9:,.1f} GFLOP/token, "
        f"step time {first.step_time_s:,.2f} s, {first.tokens_per_s:,.0f} tokens/s, "
        f"{first.tokens_per_day / 1e9:,.2f} B tokens/day",
    ]
    if first.train_tokens is not None:
        lines.append(f"{first.train_tokens / 1e12:,.2f} T tokens take {first.train_days:,.1f} days")
    problems: dict[str, list[str]] = {}  # problem -> the columns that have it
    notes: dict[str, list[str]] = {}
    for name, plan in zip(names, plans, strict=True):
        for problem in plan.problems:
            problems.setdefault(problem, []).append(name)
        for note in plan.notes:
            notes.setdefault(note, []).append(name)
    lines += [f"{', '.join(columns)}: {problem}" for problem, columns in problems.items()]
    lines += [f"note ({', '.join(columns)}): {note}" for note, columns in notes.items()]
    return "\n".join(lines)


def plan_to_dict(plan: TrainingPlan) -> dict:
    """JSON-ready form of a plan (the ``--json`` output)."""
    data = dataclasses.asdict(plan)
    data["problems"] = list(plan.problems)
    data["notes"] = list(plan.notes)
    data["ok"] = plan.ok
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="llama3.1-8b", choices=list(PRESETS), help="model preset")
    parser.add_argument("--gpus", type=int, default=8, help="number of GPUs (default 8)")
    parser.add_argument("--gpu", default="h100", choices=list(GPUS), help="GPU type (default h100)")
    parser.add_argument("--seq", type=int, default=None, help="sequence length (default: 8192 or max_seq_len)")
    parser.add_argument("--batch-tokens", default="16M",
                        help="tokens per optimizer step; K/M suffixes are powers of two, 16M = 2^24 (default 16M)")
    parser.add_argument("--micro-batch", type=int, default=1, help="sequences per GPU per forward (default 1)")
    parser.add_argument("--parallel", choices=["ddp", "fsdp"], default=None,
                        help="one strategy (default: both, or FSDP alone with --tp)")
    parser.add_argument("--tp", "--tensor-parallel", dest="tensor_parallel", type=int, default=1,
                        help="GPUs per tensor-parallel group, with sequence parallelism; needs FSDP, which shards "
                             "over the other dimension of the mesh (default 1: none)")
    parser.add_argument("--ac", choices=["none", "full"], default=None,
                        help="activation checkpointing (default: show both)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilization for the timings (default 0.4)")
    parser.add_argument("--train-tokens", default=None, help="a token budget to time, powers of ten (e.g. 15.6T)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs joined by NVLink (default 8)")
    parser.add_argument("--internode-gbps", type=float, default=INTERNODE_GBPS,
                        help=f"network GB/s of each GPU's own NIC across nodes (default {INTERNODE_GBPS:g}); a "
                             f"data-parallel group with k GPUs on a node uses k of them at once")
    parser.add_argument("--json", action="store_true", help="print the plans as JSON")


def run(args: argparse.Namespace) -> int:
    parallels = (args.parallel,) if args.parallel else None
    checkpointing = (args.ac == "full",) if args.ac else (False, True)
    try:
        plans = plan_grid(get_preset(args.preset), parallels=parallels, checkpointing=checkpointing, gpus=args.gpus,
                          gpu=args.gpu, seq_len=args.seq, batch_tokens=args.batch_tokens, micro_batch=args.micro_batch,
                          mfu=args.mfu, train_tokens=args.train_tokens, gpus_per_node=args.gpus_per_node,
                          internode_gbps=args.internode_gbps, tensor_parallel=args.tensor_parallel,
                          model=args.preset)
    except ValueError as error:
        raise UserError(str(error)) from error
    if args.json:
        print(json.dumps([plan_to_dict(p) for p in plans], indent=2))
    else:
        print(format_plans(plans))
    return 0
