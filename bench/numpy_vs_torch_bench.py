"""One training step of the ``tiny`` Llama: the numpy model (chapters 3-5) against the PyTorch model (chapter 6).

    python bench/numpy_vs_torch_bench.py                    # threads = CPUs available to this process
    python bench/numpy_vs_torch_bench.py --threads 1 --batch-size 8 --seq-len 256

Both models have the ``tiny`` shape (4 layers, dim 256, 8 query / 4 kv heads, vocab 4096, tied embeddings), float32,
the same weights (the numpy ``state_dict`` loaded into the PyTorch model) and the same batch. A step is forward,
cross-entropy, backward, gradient clipping and AdamW, in eager PyTorch. Steps of the two alternate, so load from
other processes hits both alike; the script prints the losses side by side, the best and median time per step, and
the ratio numpy / PyTorch (the target is <= 3x). numpy's BLAS threads are fixed through the environment before numpy
is imported, PyTorch's through ``torch.set_num_threads``.
"""

from __future__ import annotations

import argparse
import os
import statistics

from _timing import default_threads, interleaved_times, pin_blas_threads  # bench/_timing.py


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=default_threads(), help="BLAS / torch threads")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per engine")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    pin_blas_threads(args.threads)

    # Imported only now, so that the thread settings above take effect.
    import numpy as np
    import torch

    from minillama.autograd import manual_seed, optim
    from minillama.config import get_preset
    from minillama.model import Llama as TorchLlama
    from minillama.numpy_llama import Llama, TrainConfig, lm_loss, make_optimizer

    torch.set_num_threads(args.threads)
    config = get_preset(args.preset)
    train_config = TrainConfig(batch_size=args.batch_size, seq_len=args.seq_len)
    print(f"{args.preset}: {config.num_params():,} parameters; batch {args.batch_size} x {args.seq_len} tokens; "
          f"threads: numpy BLAS {os.environ['OPENBLAS_NUM_THREADS']}, torch {torch.get_num_threads()}; "
          f"numpy {np.__version__}, torch {torch.__version__}")

    manual_seed(0)
    numpy_model = Llama(config)
    torch_model = TorchLlama(config)
    torch_model.load_state_dict({name: torch.from_numpy(value) for name, value in numpy_model.state_dict().items()})
    numpy_optimizer = make_optimizer(numpy_model, train_config)
    matrices = [p for p in torch_model.parameters() if p.ndim >= 2]
    gains = [p for p in torch_model.parameters() if p.ndim < 2]
    torch_optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": train_config.weight_decay}, {"params": gains, "weight_decay": 0.0}],
        lr=train_config.lr, betas=(train_config.beta1, train_config.beta2), foreach=True,
    )
    batch = np.random.default_rng(0).integers(0, config.vocab_size, (args.batch_size, args.seq_len + 1))
    x, y = batch[:, :-1], batch[:, 1:]
    x_torch, y_torch = torch.from_numpy(x), torch.from_numpy(y).reshape(-1)

    def numpy_step() -> float:
        loss = lm_loss(numpy_model, x, y)
        numpy_optimizer.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(numpy_model.parameters(), train_config.grad_clip)
        numpy_optimizer.step()
        return loss.item()

    def torch_step() -> float:
        logits = torch_model(x_torch)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y_torch)
        torch_optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(torch_model.parameters(), train_config.grad_clip)
        torch_optimizer.step()
        return loss.item()

    loss_numpy, loss_torch = numpy_step(), torch_step()  # first step from identical weights: identical losses
    times_numpy, times_torch = interleaved_times(numpy_step, torch_step, args.repeats, args.warmup)
    tokens = args.batch_size * args.seq_len
    best_numpy, best_torch = min(times_numpy), min(times_torch)
    median_numpy, median_torch = statistics.median(times_numpy), statistics.median(times_torch)
    print(f"first-step loss: numpy {loss_numpy:.6f}, torch {loss_torch:.6f}")
    print(f"{'engine':<10}{'best ms':>10}{'median ms':>12}{'tokens/s':>10}")
    print(f"{'numpy':<10}{best_numpy * 1e3:>10.1f}{median_numpy * 1e3:>12.1f}{tokens / best_numpy:>10.0f}")
    print(f"{'pytorch':<10}{best_torch * 1e3:>10.1f}{median_torch * 1e3:>12.1f}{tokens / best_torch:>10.0f}")
    print(f"ratio numpy / pytorch: best {best_numpy / best_torch:.2f}x, median {median_numpy / median_torch:.2f}x "
          "(target <= 3x)")


if __name__ == "__main__":
    main()
