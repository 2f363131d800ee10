"""Training throughput and MFU on one GPU: ``small-100m`` and ``llama3.2-1b`` at sequence 2048, the chapter 8 path.

    python bench/gpu_train_bench.py                       # both models on the first CUDA GPU
    python bench/gpu_train_bench.py --models llama3.2-1b --batch 8 --steps 20
    python bench/gpu_train_bench.py --rmsnorm triton      # the fused Triton RMSNorm instead of the compiled one
    python bench/gpu_train_bench.py --float8              # FP8 matmuls in the blocks (torchao; compute capability 8.9+)
    python bench/gpu_train_bench.py --smoke               # CPU, nano, 3 steps: checks the code path anywhere

The performance path: fp32 weights with bf16 autocast (the matmuls and attention run in bf16 on the tensor cores),
fused AdamW (one kernel for all parameters), ``torch.compile`` of each transformer block (one graph, compiled once and
reused by every block), and SDPA restricted to the flash-attention backend (Dao et al. 2022). The step is the plain
one: forward, float32 cross-entropy, backward, gradient clipping at 1.0, AdamW, on a fixed batch of random tokens
(throughput does not depend on the data). After ``--warmup`` untimed steps (compilation happens in the first), the
script times ``--steps`` steps between CUDA synchronizations and reports

- tokens/s = ``batch * seq * steps / seconds``,
- MFU = ``tokens/s * config.flops_per_token(seq) / peak`` with the peak dense bf16 FLOP/s of
  :data:`minillama.plan.GPUS` (989 TFLOP/s on an H100 SXM); recomputation is not counted (PaLM's convention),
- the peak memory allocated, next to ``minillama plan``'s estimate for the same batch.

Target on one H100: MFU >= 45% for llama3.2-1b at sequence 2048 (torchtitan reports about 39% for Llama 3 8B on
8 H100s with FSDP and compile). Without a CUDA GPU the script stops with a message, except with ``--smoke``, which runs
the same code on the CPU with the ``nano`` preset, sequence 64, and ``torch.compile``'s ``aot_eager`` backend (graph
capture and the joint forward/backward graph, without Inductor's code generation, which takes minutes on a CPU).

``--float8 [tensorwise|rowwise|rowwise_with_gw_hp]`` converts the linears of the transformer blocks to torchao's FP8
training linears (:mod:`minillama.kernels.float8`: the output head stays in bf16) after building the model and
before compiling it. It needs torchao and a GPU of compute capability 8.9 or newer (H100: 9.0), and stops with the
reason otherwise. With ``--smoke`` the FP8 matmuls are emulated in fp32 on the CPU (the same casts and scales, no
speed-up): it checks the code path, conversion and compilation included. MFU stays relative to the bf16 peak, so
that bf16 and FP8 runs compare on one scale (the FP8 tensor cores' peak is twice that).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from minillama.config import get_preset
from minillama.kernels import use_fused_rmsnorm, uses_triton
from minillama.kernels.float8 import RECIPES, convert_to_float8, float8_available
from minillama.model import Llama
from minillama.plan import GPUS, gpu_for_device_name, memory_per_gpu
from minillama.train.step import cross_entropy_loss
from minillama.train.wrapping import apply_activation_checkpointing

DEFAULT_BATCH = {"small-100m": 16, "llama3.2-1b": 4}  # sequences of 2048 tokens; fits an 80 GB GPU with room to spare


@dataclass
class BenchResult:
    model: str
    n_params: int
    device: str
    batch: int
    seq_len: int
    steps: int
    tokens_per_s: float
    tflops: float
    """Achieved model TFLOP/s: ``tokens_per_s * flops_per_token``."""
    mfu: float | None
    """``None`` where the device's peak is not in the table (CPUs, unknown GPUs)."""
    peak_memory_gb: float | None
    planned_memory_gb: float
    """``minillama plan``'s estimate (one GPU, 16 bytes per parameter + activations)."""
    losses: list[float]
    compile_backend: str | None
    rmsnorm: str
    """Which RMSNorm ran."""
    activation_checkpointing: bool
    float8: str | None = None
    """The FP8 recipe of the blocks' linears (``"tensorwise, emulated"`` with ``--smoke``), or ``None`` for bf16."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["small-100m", "llama3.2-1b"], help="model presets")
    parser.add_argument("--seq", type=int, default=2048, help="sequence length (default 2048)")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default: per model)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, compilation included (default 3)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend per block, or 'none' (default inductor; aot_eager with --smoke)")
    parser.add_argument("--rmsnorm", choices=["torch", "triton"], default="torch",
                        help="RMSNorm: the model's (fused by the compiler) or minillama.kernels' (Triton on CUDA)")
    parser.add_argument("--ac", action="store_true", help="full activation checkpointing per block")
    parser.add_argument("--float8", nargs="?", const="tensorwise", choices=RECIPES, default=None, metavar="RECIPE",
                        help="FP8 matmuls in the transformer blocks through torchao (default recipe: tensorwise; "
                             "emulated in fp32 with --smoke)")
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--smoke", action="store_true", help="CPU check of the code path: nano, seq 64, 3 steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.seq, args.steps, args.warmup = ["nano"], 64, 2, 1
        args.batch = args.batch or 2
        if args.compile_backend == "inductor":
            args.compile_backend = "aot_eager"
    return args


def build(preset: str, seq_len: int, device: torch.device, args: argparse.Namespace
          ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model in fp32 on ``device``, wrapped from outside (FP8 linears, fused norm, checkpointing, compile), and
    fused AdamW."""
    config = get_preset(preset)
    if config.max_seq_len < seq_len:
        config = get_preset(preset, max_seq_len=seq_len)  # small-100m is defined for 1024; RoPE extends as is
    torch.manual_seed(0)
    with device:
        model = Llama(config)
    if args.float8:  # first: AC, compile (and FSDP) wrap the converted linears
        convert_to_float8(model, recipe=args.float8, emulate=args.smoke)
    if args.rmsnorm == "triton":
        use_fused_rmsnorm(model)
    if args.ac:
        apply_activation_checkpointing(model)
    if args.compile_backend != "none":
        for block in model.layers:  # one small graph, compiled once, reused by every block (torchtitan's way)
            block.compile(backend=args.compile_backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    return model, optimizer


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
               targets: torch.Tensor) -> torch.Tensor:
    """Forward in bf16 autocast with flash attention, fp32 loss, backward, clip, AdamW; returns the loss (on device)."""
    with torch.autocast(inputs.device.type, dtype=torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        logits = model(inputs)  # (B, T, vocab)
    loss = cross_entropy_loss(logits, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(preset: str, device: torch.device, args: argparse.Namespace) -> BenchResult:
    batch = args.batch or DEFAULT_BATCH.get(preset, 8)
    model, optimizer = build(preset, args.seq, device, args)
    config = model.config
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, config.vocab_size, (batch, args.seq + 1), generator=generator).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T + 1) -> (B, T), next-token targets

    losses = [float(train_step(model, optimizer, inputs, targets)) for _ in range(args.warmup)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    step_losses = [train_step(model, optimizer, inputs, targets) for _ in range(args.steps)]
    synchronize(device)
    seconds = time.perf_counter() - start
    losses += [float(loss) for loss in step_losses]

    tokens_per_s = batch * args.seq * args.steps / seconds
    flops_per_token = config.flops_per_token(args.seq)
    gpu = gpu_for_device_name(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    peak = GPUS[gpu].peak_flops if gpu else None
    planned = memory_per_gpu(config, gpus=1, parallel="ddp", activation_checkpointing=args.ac,
                             tokens_per_micro_batch=batch * args.seq)
    result = BenchResult(
        model=preset, n_params=config.num_params(), device=_device_name(device), batch=batch, seq_len=args.seq,
        steps=args.steps, tokens_per_s=tokens_per_s, tflops=tokens_per_s * flops_per_token / 1e12,
        mfu=tokens_per_s * flops_per_token / peak if peak else None,
        peak_memory_gb=torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
        planned_memory_gb=planned.total / 1e9, losses=losses,
        compile_backend=None if args.compile_backend == "none" else args.compile_backend,
        rmsnorm=_rmsnorm_label(args.rmsnorm, inputs), activation_checkpointing=args.ac,
        float8=(args.float8 + (", emulated" if args.smoke else "")) if args.float8 else None,
    )
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _rmsnorm_label(choice: str, x: torch.Tensor) -> str:
    if choice == "torch":
        return "torch (the model's)"
    return "minillama.kernels: " + ("Triton" if uses_triton(x) else "PyTorch fallback (no Triton here)")


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def format_results(results: list[BenchResult]) -> str:
    header = f"{'model':<14}{'params':>9}{'batch x seq':>14}{'tokens/s':>12}{'TFLOP/s':>10}{'MFU':>7}" \
             f"{'peak GB':>9}{'plan GB':>9}"
    lines = [f"device: {results[0].device}; bf16 autocast, fused AdamW, compile per block "
             f"({results[0].compile_backend}), SDPA flash, RMSNorm {results[0].rmsnorm}"
             + (", activation checkpointing" if results[0].activation_checkpointing else "")
             + (f", FP8 block linears (torchao, {results[0].float8})" if results[0].float8 else ""), header]
    for r in results:
        mfu = f"{r.mfu:.1%}" if r.mfu is not None else "n/a"
        peak = f"{r.peak_memory_gb:.1f}" if r.peak_memory_gb is not None else "n/a"
        lines.append(f"{r.model:<14}{r.n_params / 1e9:>8.2f}B{f'{r.batch} x {r.seq_len}':>14}"
                     f"{r.tokens_per_s:>12,.0f}{r.tflops:>10.1f}{mfu:>7}{peak:>9}{r.planned_memory_gb:>9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        torch.set_float32_matmul_precision("high")  # TF32 for what stays in fp32
    else:
        raise SystemExit("gpu_train_bench.py measures GPU training throughput and needs a CUDA GPU, but "
                         "torch.cuda.is_available() is False here. Run it on a GPU machine, or run "
                         "`python bench/gpu_train_bench.py --smoke` to check the code path on the CPU.")
    if args.float8:
        ok, reason = float8_available(device, emulate=args.smoke)
        if not ok:
            raise SystemExit(f"--float8: {reason}")
    results = []
    for preset in args.models:
        try:
            results.append(bench_model(preset, device, args))
        except torch.OutOfMemoryError:
            print(f"{preset}: out of GPU memory at batch {args.batch or DEFAULT_BATCH.get(preset, 8)}; "
                  f"try a smaller --batch or --ac", file=sys.stderr)
            torch.cuda.empty_cache()
    if not results:
        return 1
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(format_results(results))
    return 0 if all(math.isfinite(r.losses[-1]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
