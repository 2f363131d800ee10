#!/usr/bin/env bash
# Train Llama 3.1 8B on one node of 8 H100s with FSDP2 (configs/llama3.1-8b-8xh100.toml). Chapter 9.
#
#   scripts/train_8xh100.sh                              # the config as it is
#   scripts/train_8xh100.sh --max-steps 20 --log-interval 1   # any `minillama train` flag overrides the config
#   NPROC=4 CONFIG=configs/small-100m.toml scripts/train_8xh100.sh --parallel ddp    # other GPUs, other runs
#
# Every process of the job runs `python -m minillama.parallel train` with the same arguments; torchrun sets RANK,
# LOCAL_RANK (= the GPU) and WORLD_SIZE for each, and --standalone starts the rendezvous on this node.
set -euo pipefail
cd "$(dirname "$0")/.."

NPROC=${NPROC:-8}
CONFIG=${CONFIG:-configs/llama3.1-8b-8xh100.toml}
# Meta's Llama 3 tokenizer (128K tokens), shipped in the llama-models package.
TOKENIZER=${TOKENIZER:-$(python -c 'from minillama.tokenizer.llama3 import default_tokenizer_path as p; print(p())')}
RUN_DIR=${RUN_DIR:-runs/$(basename "$CONFIG" .toml)}

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}      # CPU threads per process: data loading only
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1           # a failed collective ends the job instead of hanging it

# Tokenize the corpus once (cached in $MINILLAMA_CACHE) before 8 processes wait on it.
python -m minillama.parallel prepare --config "$CONFIG" --tokenizer "$TOKENIZER"

RESUME=()
if [ -d "$RUN_DIR/checkpoints" ]; then RESUME=(--resume "$RUN_DIR"); fi   # a restarted job continues the run

torchrun --standalone --nproc_per_node "$NPROC" -m minillama.parallel train \
    --config "$CONFIG" --tokenizer "$TOKENIZER" --run-dir "$RUN_DIR" ${RESUME[@]+"${RESUME[@]}"} "$@"
