"""Batch-1 decode with quantized weights vs the float model, on CPU: tokens/s, memory, logit error, roofline.

The same random-weight model is copied and quantized with each scheme (``minillama.quantize``); each round times a
greedy decode of every copy in turn (float first), so load from other processes hits them alike, and the report
gives the best round of each and its ratio to the float model's best round (> 1: faster than float), in wall-clock
time and in this process's CPU time (steadier on a loaded machine; with ``--threads 1`` it is the work done).
Memory is what the weights' tensors occupy (``footprint_bytes``) plus the KV cache; logit error is
``|l_q - l| / |l|`` over a random sequence. The machine's memory bandwidth is measured too (the best
matrix-vector product over a 512 MiB matrix, once per round beside the decodes), and the roofline,
``bandwidth / bytes read per step``, says how far each decode is from the memory bound.

    python bench/decode_bench.py                          # tiny and small-100m, 64 new tokens, 3 rounds
    python bench/decode_bench.py --presets tiny --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from minillama.config import get_preset
from minillama.decode_cost import decode_bytes_per_step
from minillama.generate import generate
from minillama.model import Llama
from minillama.quantize import footprint_bytes, quantize_model

SCHEMES = ("float", "int8", "int4-g64", "int4-g64-asym", "fp8")


def memory_bandwidth(mebibytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second a matrix-vector product reads, the best of ``repeats`` over a matrix far larger than the
    caches: the operation a batch-1 decode step is made of, so the bound it can reach on this machine."""
    matrix = torch.ones(mebibytes * 2**20 // (4 * 4096), 4096)  # (N, 4096) float32
    vector = torch.ones(4096)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matrix @ vector
        best = min(best, time.perf_counter() - start)
    return matrix.numel() * 4 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small-100m"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bandwidth = memory_bandwidth()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, measured memory bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s")
    for preset in args.presets:
        torch.manual_seed(0)
        base = Llama(get_preset(preset)).eval()
        config = base.config
        prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens))
        sample = torch.randint(0, config.vocab_size, (1, 128))
        models = {"float": base}
        for scheme in SCHEMES[1:]:
            models[scheme] = quantize_model(copy.deepcopy(base), scheme)
        with torch.no_grad():
            reference = base(sample)
            errors = {s: float((m(sample) - reference).norm() / reference.norm()) for s, m in models.items()}
        for model in models.values():  # warm-up: first-call costs (allocations, kernel selection)
            generate(model, prompt, 2, temperature=0)
        best = {s: float("inf") for s in models}
        best_cpu = {s: float("inf") for s in models}
        for _ in range(args.rounds):
            bandwidth = max(bandwidth, memory_bandwidth(repeats=1))  # measured with the decodes, under the same load
            for scheme, model in models.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                generate(model, prompt, args.new_tokens, temperature=0)
                best[scheme] = min(best[scheme], time.perf_counter() - start)
                best_cpu[scheme] = min(best_cpu[scheme], time.process_time() - start_cpu)
        context = args.prompt_tokens + args.new_tokens
        cache_bytes = context * 2 * config.n_layers * config.n_kv_heads * config.head_dim * 4  # fp32 cache
        print(f"\n{preset}: batch 1, {args.prompt_tokens}-token prompt + {args.new_tokens} greedy tokens, "
              f"best of {args.rounds} rounds; KV cache {cache_bytes / 2**20:.2f} MiB (fp32); "
              f"best bandwidth so far {bandwidth / 1e9:.1f} GB/s")
        print(f"{'scheme':<15}{'tokens/s':>10}{'vs float':>10}{'CPU ms/tok':>12}{'vs float':>10}"
              f"{'weights MiB':>13}{'vs float':>10}{'logit err':>11}{'% roofline':>12}")
        for scheme, model in models.items():
            weights = footprint_bytes(model)
            tokens_per_s = args.new_tokens / best[scheme]
            roofline = bandwidth / decode_bytes_per_step(weights, config, context // 2, kv_bytes_per_value=4)
            cpu_ms = 1e3 * best_cpu[scheme] / args.new_tokens
            print(f"{scheme:<15}{tokens_per_s:>10.1f}{best['float'] / best[scheme]:>10.2f}"
                  f"{cpu_ms:>12.2f}{best_cpu['float'] / best_cpu[scheme]:>10.2f}{weights / 2**20:>13.2f}"
                  f"{weights / footprint_bytes(base):>10.2f}{errors[scheme]:>11.4f}"
                  f"{100 * tokens_per_s / roofline:>11.1f}%")


if __name__ == "__main__":
    main()
