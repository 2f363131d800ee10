"""What a run reports: a JSONL log, throughput in tokens per second, and model FLOPs utilization (MFU).

**MFU** (Chowdhery et al. 2022) is the share of the hardware's peak that goes into the model's own arithmetic:
``tokens/s * FLOPs per token / peak FLOP/s``, with the FLOPs per token of ``ModelConfig.flops_per_token`` (6N plus
attention) and the peak from :data:`minillama.gpus.GPUS`. Recomputation (activation checkpointing) does not count,
so MFU compares runs fairly across tricks; the Llama 3 405B run reached 38-43% on H100s (Grattafiori et al. 2024).
CPUs and Apple GPUs have no peak in the table: for them the trainer reports tokens per second only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from minillama.atomic import atomic_write
from minillama.gpus import peak_flops_for_name


def peak_flops(device: torch.device | str) -> float | None:
    """Peak dense 16-bit FLOP/s of ``device`` (:data:`minillama.gpus.GPUS`), or ``None`` (CPU, MPS, unknown GPU)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


def mfu(tokens_per_second: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilization in [0, 1], or ``None`` without a known peak.

    >>> round(mfu(100_000, 6 * 1e9, 989e12), 3)  # 100k tokens/s of a 1B model on one H100
    0.607
    """
    if peak is None or peak <= 0:
        return None
    return tokens_per_second * flops_per_token / peak


class Throughput:
    """Tokens per second over the steps since the last ``rate()`` call (time spent in eval and saving excluded)."""

    def __init__(self) -> None:
        self.tokens, self.seconds = 0, 0.0
        self._started: float | None = None

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self, tokens: int) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.tokens += tokens
            self._started = None

    def rate(self) -> float:
        """Tokens per second since the previous call; resets the window."""
        value = self.tokens / self.seconds if self.seconds > 0 else 0.0
        self.tokens, self.seconds = 0, 0.0
        return value


class ProgressReport:
    """The progress bar and the throughput of a run: ``start_step()``/``end_step()`` around each step, then at a
    logging step ``rates(loss)``: tokens per second since the last call and, on a GPU in the table, MFU.

    ``devices`` divides the throughput (tokens of all ranks) for the MFU of one device.
    """

    def __init__(self, total: int, initial: int, *, enabled: bool, flops_per_token: float,
                 device: torch.device, devices: int = 1) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not enabled)
        self.throughput = Throughput()
        self.flops_per_token, self.devices = flops_per_token, devices
        self.peak = peak_flops(device)

    def __enter__(self) -> ProgressReport:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def start_step(self) -> None:
        self.throughput.start()

    def end_step(self, tokens: int) -> None:
        self.throughput.stop(tokens)
        self.bar.update(1)

    def rates(self, loss: float) -> dict[str, float]:
        rate = self.throughput.rate()
        record = {"tokens_per_s": rate}
        postfix = {"loss": f"{loss:.3f}", "tok/s": f"{rate:,.0f}"}
        utilization = mfu(rate / self.devices, self.flops_per_token, self.peak)
        if utilization is not None:
            record["mfu"] = utilization
            postfix["mfu"] = f"{100 * utilization:.1f}%"
        self.bar.set_postfix(postfix, refresh=False)
        return record


class MetricsLogger:
    """Appends one JSON object per line to ``path`` (``metrics.jsonl``); a disabled logger (ranks > 0) does nothing.

    Each record has a ``kind`` (``"train"``, ``"eval"``, ``"skip"``, ``"overflow"``, ``"summary"``) and a ``step``.
    The file is opened for each record, so every line is on disk before training goes on and nothing is left open
    when a run dies; read it back with :func:`read_metrics` or ``pandas.read_json(path, lines=True)``.
    """

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, kind: str, step: int, **values: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")

    def samples(self, step: int, texts: list[str], val_bpb: float) -> None:
        """Append a step's samples to ``samples.txt`` beside the log."""
        if self.enabled and texts:
            with open(self.path.parent / "samples.txt", "a") as f:
                for i, text in enumerate(texts):
                    f.write(f"=== step {step}, sample {i + 1} (val bpb {val_bpb:.3f})\n{text}\n\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a run resumed from ``step`` will write them again)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (a run folder is accepted too); a torn last line is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
