"""Our PyTorch Llama vs ``transformers.LlamaForCausalLM`` on CPU: training-step and generation throughput.

Both models hold the same weights (passed through our Hugging Face conversion) and run eagerly (no
``torch.compile``, unless ``--compile``, which compiles both). The machine may be shared, so the two are measured in
alternation, several rounds; the report gives the best round of each, the ratio ours / transformers of the best rounds
and the median of the per-round ratios (>= 1.0 means ours is at least as fast).

    python bench/model_cpu_bench.py                  # tiny and small-100m training steps, tiny generation
    python bench/model_cpu_bench.py --rounds 9 --threads 1 --compile

Training step = forward + cross-entropy + backward + AdamW step. Generation = greedy decoding with a KV cache,
batch 1 (ours: ``minillama.generate.generate``; transformers: ``model.generate(do_sample=False)``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minillama.config import get_preset
from minillama.generate import generate
from minillama.model import Llama
from minillama.weights import config_to_hf, to_hf_state_dict

# preset -> (batch, sequence length) for the training step; small-100m kept small so the bench takes minutes.
TRAIN_SHAPES = {"tiny": (8, 256), "small-100m": (1, 128)}


def build_pair(preset: str):
    """Our model and a transformers model with identical weights, both float32 on CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    ours = Llama(get_preset(preset))
    hf_config = {k: v for k, v in config_to_hf(ours.config).items() if k != "rope_scaling"}
    theirs = LlamaForCausalLM(LlamaConfig(**hf_config, attn_implementation="sdpa"))
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict(), ours.config), strict=not ours.config.tie_embeddings)
    return ours, theirs


def train_step_fn(model, tokens: torch.Tensor, hf: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        logits = model(inputs).logits if hf else model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step, n: int) -> float:
    """Seconds per call of ``step`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def alternate(fns: dict[str, Callable[[], object]], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Time each function ``per_round`` times per round, alternating between them, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(time_steps(fn, per_round))
    return times


def report(title: str, units_per_call: int, times: dict[str, list[float]], unit: str) -> None:
    """Print throughput from the best round of each (the one least disturbed by other processes) and the ratios:
    of best rounds, and the median of the per-round ratios (each round times both models back to back)."""
    best = {name: units_per_call / min(t) for name, t in times.items()}
    print(title)
    for name, rate in best.items():
        print(f"  {name:>22}: {rate:10,.0f} {unit} (best of {len(times[name])}; median "
              f"{units_per_call / statistics.median(times[name]):,.0f})")
    pairs = [("ours", "transformers"), ("ours compiled", "transformers compiled"), ("ours compiled", "ours")]
    for a, b in pairs:
        if a in times and b in times:
            per_round = [t_b / t_a for t_a, t_b in zip(times[a], times[b], strict=True)]
            print(f"  {a} / {b}: {best[a] / best[b]:.2f}x best-of, {statistics.median(per_round):.2f}x median of "
                  f"per-round ratios ({', '.join(f'{r:.2f}' for r in per_round)})")


def bench_training(preset: str, rounds: int, compile: bool) -> None:
    ours, theirs = build_pair(preset)
    B, T = TRAIN_SHAPES[preset]
    tokens = torch.randint(0, ours.config.vocab_size, (B, T + 1), generator=torch.Generator().manual_seed(0))
    fns = {"ours": train_step_fn(ours, tokens, hf=False), "transformers": train_step_fn(theirs, tokens, hf=True)}
    if compile:
        fns["ours compiled"] = train_step_fn(torch.compile(ours), tokens, hf=False)
        fns["transformers compiled"] = train_step_fn(torch.compile(theirs), tokens, hf=True)
    times = alternate(fns, rounds, per_round=1)
    report(f"training step, {preset} ({ours.num_params() / 1e6:.1f}M params), batch {B} x {T} tokens",
           B * T, times, "tokens/s")


def bench_generation(preset: str, rounds: int, new_tokens: int = 128) -> None:
    ours, theirs = build_pair(preset)
    ours.eval(), theirs.eval()
    prompt = torch.randint(0, ours.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))

    def run_ours():
        return generate(ours, prompt, new_tokens, temperature=0)

    def run_theirs():
        with torch.inference_mode():
            return theirs.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                   pad_token_id=0)

    assert torch.equal(run_ours(), run_theirs()), "greedy tokens differ between the two models"
    times = alternate({"ours": run_ours, "transformers": run_theirs}, rounds, 1)
    report(f"KV-cache greedy generation, {preset}, batch 1, {new_tokens} new tokens after 16", new_tokens, times,
           "tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds (default: 5)")
    parser.add_argument("--presets", nargs="+", default=list(TRAIN_SHAPES), choices=list(TRAIN_SHAPES))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models (slow to compile)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is steadiest on a machine shared with other jobs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    for preset in args.presets:
        bench_training(preset, args.rounds, args.compile)
    bench_generation("tiny", args.rounds)


if __name__ == "__main__":
    main()
