"""Forward + backward time of the numpy autograd engine against PyTorch CPU eager, same models, same threads.

    python bench/autograd_bench.py                 # threads = CPUs available to this process
    python bench/autograd_bench.py --threads 1 --repeats 30

Two workloads, both float32 with identical weights in the two engines (the losses are printed side by side):
(a) a 2-layer MLP with cross-entropy, (b) a stack of 4 pre-norm transformer blocks (d=128, T=64, B=8, 4 heads) with
RMSNorm, fused causal attention and a SwiGLU feed-forward, as in Llama. Steps of the two engines alternate; the
script prints the best time per step of each, their ratio numpy / torch and the ratio of the medians. The target for
(b) is <= 3x. numpy's BLAS threads are fixed through the environment before numpy is imported, torch's through
``torch.set_num_threads``.
"""

from __future__ import annotations

import argparse
import os
import statistics

from _timing import default_threads, interleaved_times, pin_blas_threads  # bench/_timing.py


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=default_threads(), help="BLAS / torch threads")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per workload and engine")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    pin_blas_threads(args.threads)

    # Imported only now, so that the thread settings above take effect.
    import numpy as np
    import torch
    import torch.nn.functional as torch_F

    from minillama.autograd import Tensor, manual_seed, nn
    from minillama.autograd import functional as F

    torch.set_num_threads(args.threads)
    print(f"threads: numpy BLAS {os.environ['OPENBLAS_NUM_THREADS']} (OPENBLAS_NUM_THREADS), "
          f"torch {torch.get_num_threads()} (torch.set_num_threads); numpy {np.__version__}, torch {torch.__version__}")
    manual_seed(0)
    rng = np.random.default_rng(0)

    def to_torch(module: nn.Module) -> dict[str, torch.Tensor]:
        return {name: torch.tensor(p.data, requires_grad=True) for name, p in module.named_parameters()}

    # ---- (a) 2-layer MLP ------------------------------------------------------------------------------------------
    batch, n_in, hidden, n_classes = 512, 256, 1024, 10

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(n_in, hidden)
            self.fc2 = nn.Linear(hidden, n_classes)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc2(self.fc1(x).relu())

    mlp = MLP()
    x_np = rng.standard_normal((batch, n_in)).astype(np.float32)
    y_np = rng.integers(0, n_classes, batch)
    mlp_t = to_torch(mlp)
    x_t, y_t = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def mlp_step() -> float:
        mlp.zero_grad()
        loss = F.cross_entropy(mlp(Tensor(x_np)), y_np)
        loss.backward()
        return loss.item()

    def mlp_step_torch() -> float:
        for p in mlp_t.values():
            p.grad = None
        h = torch_F.relu(torch_F.linear(x_t, mlp_t["fc1.weight"], mlp_t["fc1.bias"]))
        loss = torch_F.cross_entropy(torch_F.linear(h, mlp_t["fc2.weight"], mlp_t["fc2.bias"]), y_t)
        loss.backward()
        return loss.item()

    # ---- (b) tiny transformer stack ----------------------------------------------------------------------------------
    B, T, dim, n_heads, n_layers = 8, 64, 128, 4, 4
    head_dim, ffn_dim = dim // n_heads, 352  # ffn_dim: Llama's 4 * dim * 2/3 rounded up to a multiple of 32

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention_norm = nn.RMSNorm(dim)
            self.wq, self.wk = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
            self.wv, self.wo = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
            self.ffn_norm = nn.RMSNorm(dim)
            self.w1, self.w3 = nn.Linear(dim, ffn_dim, bias=False), nn.Linear(dim, ffn_dim, bias=False)
            self.w2 = nn.Linear(ffn_dim, dim, bias=False)

        def forward(self, x: Tensor) -> Tensor:
            B, T, _ = x.shape  # batch, time, dim
            h = self.attention_norm(x)
            q = self.wq(h).reshape(B, T, n_heads, head_dim).transpose(1, 2)  # (B, T, dim) -> (B, H, T, D)
            k = self.wk(h).reshape(B, T, n_heads, head_dim).transpose(1, 2)
            v = self.wv(h).reshape(B, T, n_heads, head_dim).transpose(1, 2)
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.wo(attn.transpose(1, 2).reshape(B, T, dim))  # (B, H, T, D) -> (B, T, dim)
            h = self.ffn_norm(x)
            return x + self.w2(F.silu(self.w1(h)) * self.w3(h))

    blocks = nn.ModuleList(Block() for _ in range(n_layers))
    tokens_np = rng.standard_normal((B, T, dim)).astype(np.float32)
    target_np = rng.standard_normal((B, T, dim)).astype(np.float32)
    blocks_t = to_torch(blocks)
    tokens_t, target_t = torch.from_numpy(tokens_np), torch.from_numpy(target_np)

    def transformer_step() -> float:
        blocks.zero_grad()
        x = Tensor(tokens_np)
        for block in blocks:
            x = block(x)
        loss = ((x - target_np) ** 2).mean()
        loss.backward()
        return loss.item()

    def transformer_step_torch() -> float:
        for p in blocks_t.values():
            p.grad = None
        x = tokens_t
        for i in range(n_layers):
            w = {name.split(".", 1)[1]: p for name, p in blocks_t.items() if name.startswith(f"{i}.")}
            h = torch_F.rms_norm(x, (dim,), w["attention_norm.weight"], 1e-6)
            q = torch_F.linear(h, w["wq.weight"]).view(B, T, n_heads, head_dim).transpose(1, 2)
            k = torch_F.linear(h, w["wk.weight"]).view(B, T, n_heads, head_dim).transpose(1, 2)
            v = torch_F.linear(h, w["wv.weight"]).view(B, T, n_heads, head_dim).transpose(1, 2)
            attn = torch_F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + torch_F.linear(attn.transpose(1, 2).reshape(B, T, dim), w["wo.weight"])
            h = torch_F.rms_norm(x, (dim,), w["ffn_norm.weight"], 1e-6)
            x = x + torch_F.linear(torch_F.silu(torch_F.linear(h, w["w1.weight"])) * torch_F.linear(h, w["w3.weight"]),
                                   w["w2.weight"])
        loss = ((x - target_t) ** 2).mean()
        loss.backward()
        return loss.item()

    print(f"{'workload':<42}{'loss numpy':>11}{'loss torch':>11}{'numpy ms':>10}{'torch ms':>10}{'ratio':>7}"
          f"{'median ratio':>14}")
    for name, ours, theirs in [
        (f"(a) MLP {n_in}-{hidden}-{n_classes}, batch {batch}", mlp_step, mlp_step_torch),
        (f"(b) {n_layers} blocks d={dim} T={T} B={B} H={n_heads}", transformer_step, transformer_step_torch),
    ]:
        loss_ours, loss_theirs = ours(), theirs()
        times_ours, times_theirs = interleaved_times(ours, theirs, args.repeats, args.warmup)
        best_ours, best_theirs = min(times_ours), min(times_theirs)
        median_ratio = statistics.median(times_ours) / statistics.median(times_theirs)
        print(f"{name:<42}{loss_ours:>11.6f}{loss_theirs:>11.6f}{best_ours * 1e3:>10.2f}{best_theirs * 1e3:>10.2f}"
              f"{best_ours / best_theirs:>6.2f}x{median_ratio:>13.2f}x")
    print("times: best of the repeats (least disturbed by other load); ratio = numpy / torch")

if __name__ == "__main__":
    main()
