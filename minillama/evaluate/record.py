"""Record what chapter 12 shows: the default run's checkpoints evaluated over training, seeds, shots, tokenizers.

    python -m minillama.evaluate.record                    # trains what is missing (about 10 CPU-minutes), evaluates
    python -m minillama.evaluate.record --runs runs/ch12   # where the run folders go (reused when present)

It trains with today's default command, ``minillama train`` (the ``tiny`` preset on tinyshakespeare), three times
(seeds 1337, 1 and 2, a checkpoint every 50 steps), once more with a 512-token BPE vocabulary, and once with the
``nano`` preset (its final checkpoint, 0.5 MB, is copied to ``minillama/recorded/ch12_nano/``); then it scores every
checkpoint and writes ``minillama/recorded/ch12_evaluation.json``. The chapter loads both with ``importlib.resources``
so that it runs in seconds, outside the clone too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from minillama.atomic import atomic_write

SEEDS = (1337, 1, 2)
SHOTS = (0, 1, 5)
FEWSHOT_SEEDS = (1234, 1, 2)
OUT = Path(__file__).resolve().parent.parent / "recorded" / "ch12_evaluation.json"


def train(run_dir: Path, *flags: str) -> Path:
    """``minillama train`` with ``flags`` into ``run_dir``, unless it already holds a finished run."""
    if not (run_dir / "checkpoints" / "step_400").is_dir():
        command = [sys.executable, "-m", "minillama", "train", "--num-samples", "0", "--no-progress",
                   "--run-dir", str(run_dir), *flags]
        print("$", " ".join(command[2:]), file=sys.stderr, flush=True)
        subprocess.run(command, check=True)
    return run_dir


def steps_of(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.removeprefix("step_")))


def bits(model, corpus) -> dict:
    from minillama.evaluate.bpb import bits_per_byte

    return bits_per_byte(model, corpus.val, corpus.token_bytes(), seq_len=128, batch_size=16)


def task_result(model, tokenizer, task, shots: int = 0, seed: int = 1234, per_item: bool = False) -> dict:
    """A task's summary (no unconditional scores: they double the cost), with per-item 0/1 strings if asked."""
    from minillama.evaluate.run import evaluate_task

    records, summary = evaluate_task(model, tokenizer, task, shots=shots, seed=seed, unconditional=False)
    if per_item:  # 0/1 strings keep the file small: "0110..."
        for metric in ("acc", "acc_norm"):
            summary[f"items_{metric}"] = "".join(str(int(r[metric])) for r in records)
    return summary


def ship_checkpoint(checkpoint: Path, dest: Path) -> None:
    """Copy a small checkpoint (weights, config, tokenizer) into the package for the chapter's build-along cells."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.model", "tokenizer.model.json"):
        shutil.copy(checkpoint / name, dest / name)


def record(runs: Path, out: Path) -> dict:
    from minillama.data.documents import text_source
    from minillama.data.tokenized import bpe_tokenizer_for, prepare_corpus
    from minillama.evaluate.bpb import text_bits_per_byte
    from minillama.evaluate.tasks import get_task
    from minillama.tokenizer.bpe import BPETokenizer
    from minillama.tokenizer.llama3 import Llama3Tokenizer
    from minillama.train.metrics import read_metrics
    from minillama.weights import load_checkpoint

    torch.set_num_threads(1)
    started = time.process_time()
    for seed in SEEDS:
        train(runs / f"seed{seed}", "--seed", str(seed), "--checkpoint-interval", "50", "--keep-last", "20")
    small_vocab = bpe_tokenizer_for(text_source("tinyshakespeare"), 512)
    train(runs / "bpe512", "--tokenizer", str(small_vocab))
    train(runs / "nano", "--model", "nano")  # 0.1M parameters: small enough to ship for the build-along cells
    ship_checkpoint(steps_of(runs / "nano")[-1], out.parent / "ch12_nano")

    corpus = prepare_corpus("tinyshakespeare", "bpe", 4096, 0.1)
    tokenizer = corpus.tokenizer
    next_line, arithmetic = get_task("shakespeare-next-line"), get_task("arithmetic")
    tokens_per_step = 4 * 128
    result: dict = {"command": "python -m minillama.evaluate.record",
                    "train_command": "minillama train --seed SEED --checkpoint-interval 50 --keep-last 20",
                    "tokens_per_step": tokens_per_step, "task": next_line.name, "n_items": len(next_line.items)}

    over_training = []
    for path in steps_of(runs / "seed1337"):
        model = load_checkpoint(path)
        step = int(path.name.removeprefix("step_"))
        over_training.append({"step": step, "tokens_seen": step * tokens_per_step, **bits(model, corpus),
                              "next_line": task_result(model, tokenizer, next_line, per_item=True)})
        latest = over_training[-1]
        print(f"step {step}: bpb {latest['bpb']:.3f}, acc {latest['next_line']['acc']['value']:.3f}", file=sys.stderr,
              flush=True)
    result["over_training"] = over_training
    result["in_run_eval"] = [{"step": r["step"], "val_bpb": r["val_bpb"]}
                             for r in read_metrics(runs / "seed1337" / "metrics.jsonl") if r.get("kind") == "eval"]

    final = {seed: load_checkpoint(steps_of(runs / f"seed{seed}")[-1]) for seed in SEEDS}
    result["seeds"] = [{"seed": seed, **bits(model, corpus),
                        "next_line": task_result(model, tokenizer, next_line, per_item=True)}
                       for seed, model in final.items()]
    model = final[1337]
    result["fewshot"] = [{"shots": shots, "fewshot_seed": seed,
                          "next_line": task_result(model, tokenizer, next_line, shots, seed)}
                         for shots in SHOTS for seed in (FEWSHOT_SEEDS if shots else FEWSHOT_SEEDS[:1])]
    result["arithmetic"] = [{"shots": shots, **task_result(model, tokenizer, arithmetic, shots)} for shots in (0, 5)]
    print("few-shot and arithmetic done", file=sys.stderr, flush=True)

    from minillama.evaluate.run import evaluate_task

    records, _ = evaluate_task(model, tokenizer, next_line)  # with the unconditional scores (acc_mutual_info)
    result["final_items"] = [{"id": r["id"], "gold": r["gold"], "logprobs": [round(x, 4) for x in r["logprobs"]],
                              "unconditional_logprobs": [round(x, 4) for x in r["unconditional_logprobs"]]}
                             for r in records]

    text = tokenizer.decode(corpus.val.tolist())  # the held-out tail, as text: one text for every tokenizer
    small = load_checkpoint(steps_of(runs / "bpe512")[-1])
    meta = Llama3Tokenizer()
    result["tokenizers"] = {
        "text_bytes": len(text.encode("utf-8")),
        "bpe4096": {"tokens": len(tokenizer.encode_ordinary(text)), **text_bits_per_byte(model, tokenizer, text, 128)},
        "bpe512": {"tokens": len(BPETokenizer.load(small_vocab).encode_ordinary(text)),
                   **text_bits_per_byte(small, BPETokenizer.load(small_vocab), text, 128)},
        "llama3": {"tokens": len(meta.encode_ordinary(text))},
    }
    result["cpu_seconds"] = round(time.process_time() - started, 1)
    atomic_write(out, json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/ch12", help="folder of the run folders (default: %(default)s)")
    parser.add_argument("--out", default=str(OUT), help="the JSON file to write (default: the package's)")
    args = parser.parse_args(argv)
    result = record(Path(args.runs), Path(args.out))
    print(f"wrote {args.out} ({result['cpu_seconds']} CPU seconds of evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
