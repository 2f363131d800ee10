#!/usr/bin/env bash
# DDP, FSDP or tensor parallelism on a laptop: 2 CPU processes (gloo) train `nano` on tinyshakespeare, as chapter 9
# does. Seconds.
#
#   scripts/train_cpu_2proc.sh                       # FSDP
#   scripts/train_cpu_2proc.sh --parallel ddp        # DDP
#   scripts/train_cpu_2proc.sh --tensor-parallel 2   # each process holds half of every weight matrix
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
torchrun --standalone --nproc_per_node 2 -m minillama.parallel train --config configs/nano.toml \
    --parallel fsdp --device cpu --batch-size 4 --max-steps 50 --eval-interval 50 --no-progress "$@"
