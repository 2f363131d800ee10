"""``TrainConfig``: every knob of a training run, as one typed dataclass.

Precedence is ``defaults < TOML file < command-line flag``, one flag per field (``--max-steps 500``,
``--compile/--no-compile``), and every field carries a one-line help that doubles as the ``--help`` text and as the
comment above the field in the ``config.toml`` written into each run folder. Unknown keys are errors with a
suggestion, because a typo in a config file (``warmup_step = 100``) must not silently become a default.

The defaults *are* the book's default run (``minillama train`` with no arguments, ``configs/tiny.toml``), tuned
in chapter 7 on the validation bits per byte of the evaluation loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from minillama.device import DTYPES
from minillama.train.schedule import SCHEDULES

PARALLEL = ("none", "ddp", "fsdp")
MAX_THREADS_PER_CORE = 4  # beyond, set_num_threads only slows down; at 100,000 PyTorch crashes (a segfault)


def _field(group: str):
    """A field factory for one group: ``default`` plus a one-line ``help`` (CLI help and TOML comment)."""

    def make(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
        return field(default=default, metadata={"help": help, "group": group, "choices": choices})

    return make


_data = _field("model and data")
_optim = _field("optimization")
_hardware = _field("hardware")
_eval = _field("evaluation, samples and checkpoints")


@dataclass
class TrainConfig:
    """A training run: model, data, optimizer, schedule, hardware, evaluation and checkpoints.

    ``TrainConfig()`` is the default run; ``TrainConfig.from_toml(path, **overrides)`` reads a file from
    ``configs/``; ``to_toml()`` writes the file back, with each field's help as a comment.
    """

    # --- model and data
    model: str = _data("tiny", "model preset (minillama.config.PRESETS): nano, tiny, small-100m, ...")
    corpus: str = _data("tinyshakespeare", "named corpus (tinyshakespeare, tinystories, fineweb-edu, pydocs) or a "
                        "path to a text file or folder")
    vocab_size: int = _data(0, "tokenizer (BPE) and embedding-table size; 0 = the model preset's")
    tokenizer: str = _data("bpe", "'bpe': train a BPE tokenizer on the corpus with the model's vocabulary size "
                           "(cached after the first run); or a path to a tokenizer file (tiktoken rank format)")
    val_fraction: float = _data(0.1, "share of the tokens held out for validation when the corpus has no "
                                "validation split (the tail: no window crosses it)")
    seq_len: int = _data(128, "tokens per training window (at most the model's max_seq_len)")
    batch_size: int = _data(4, "windows per micro-batch on each device")
    grad_accum_steps: int = _data(1, "micro-batches whose gradients are summed into one optimizer step")

    # --- optimizer and schedule
    max_steps: int = _optim(800, "optimizer steps in the run")
    lr: float = _optim(1e-3, "peak learning rate (AdamW)")
    min_lr_ratio: float = _optim(0.0, "final learning rate as a fraction of lr")
    warmup_steps: int = _optim(40, "linear warmup steps from 0 to lr")
    schedule: str = _optim("wsd", f"learning-rate schedule after warmup: {', '.join(SCHEDULES)} "
                           "(wsd = warmup-stable-decay)", choices=SCHEDULES)
    decay_fraction: float = _optim(0.3, "wsd only: share of max_steps spent in the final decay")
    weight_decay: float = _optim(0.1, "AdamW decoupled weight decay on matrices (not on norms)")
    beta1: float = _optim(0.9, "AdamW beta1")
    beta2: float = _optim(0.99, "AdamW beta2: 0.99 for small, noisy batches (the default run); Llama 3 uses 0.95")
    eps: float = _optim(1e-8, "AdamW epsilon")
    grad_clip: float = _optim(1.0, "clip the global gradient norm to this (0 disables clipping)")
    max_bad_steps: int = _optim(5, "abort after this many consecutive bad steps (a non-finite loss or gradient, "
                                "or a loss spike)")
    spike_factor: float = _optim(2.0, "a loss above this many times the median of the last 50 good steps (or "
                                 "ln(vocab_size) before 10 of them) is a spike, skipped like a non-finite step; 0 = "
                                 "no spike detection")

    # --- hardware
    device: str = _hardware("auto", "cpu, cuda, cuda:N, mps, or auto (CUDA > MPS > CPU)")
    dtype: str = _hardware("auto", f"{', '.join(DTYPES)}; auto = bfloat16 autocast on CUDA (float16 with loss "
                           "scaling where bf16 is unsupported), float32 elsewhere", choices=DTYPES)
    parallel: str = _hardware("none", f"data parallelism over the processes of a torchrun job (chapter 9): "
                              f"{', '.join(PARALLEL)}", choices=PARALLEL)
    tensor_parallel: int = _hardware(1, "tensor-parallel ranks per model replica (chapter 9; with --parallel fsdp): "
                                     "T ranks of one node split every weight matrix, and the world_size / T groups "
                                     "of them are FSDP's data-parallel ranks")
    compile: bool = _hardware(False, "torch.compile each transformer block")
    float8: bool = _hardware(False, "FP8 matmuls in the transformer blocks through torchao (chapter 8): H100/Ada GPUs, "
                             "bf16 autocast, pip install torchao")
    activation_checkpointing: bool = _hardware(False, "recompute each block's activations in the backward pass")
    threads: int = _hardware(1, "CPU threads for PyTorch's kernels; 0 = PyTorch's default (one per core). One is "
                             "the fastest for small models, and by far on a busy machine; use 0 for large models")
    seed: int = _hardware(1337, "seed of the weights, the data order and the samples")

    # --- evaluation, samples and checkpoints
    eval_interval: int = _eval(200, "evaluate (val loss, bits per byte, samples) every this many steps")
    eval_batches: int = _eval(8, "batches per evaluation during the run; 0 = the whole validation split (the final "
                              "evaluation always uses all of it)")
    log_interval: int = _eval(10, "write a train record to metrics.jsonl every this many steps")
    num_samples: int = _eval(2, "samples generated at each evaluation")
    sample_tokens: int = _eval(100, "tokens per sample")
    sample_prompt: str = _eval("\n", "text the samples continue")
    temperature: float = _eval(0.8, "sampling temperature")
    top_k: int = _eval(50, "sample among the k most likely tokens; 0 = all")
    checkpoint_interval: int = _eval(200, "save a checkpoint every this many steps (and always at the end)")
    keep_last: int = _eval(2, "checkpoints kept, newest first (plus the best one by val loss)")
    run_dir: str = _eval("", "run folder; empty = runs/<model>-<corpus>-<date>-<time>")
    resume: str = _eval("", "continue from a run folder (its latest checkpoint) or a checkpoint folder")
    overwrite: bool = _eval(False, "start over in a run folder that already holds a run (deleting its checkpoints "
                            "and metrics); without it such a folder is refused")
    progress: bool = _eval(True, "show a tqdm progress bar")

    def __post_init__(self) -> None:
        self.validate()

    # --- validation ------------------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Type and range checks, with messages that name the field and the accepted values."""
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = hints[f.name]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
                continue
            if expected is bool and not isinstance(value, bool) or (
                expected is not bool and (isinstance(value, bool) or not isinstance(value, expected))
            ):
                raise ValueError(f"{f.name} must be {expected.__name__}, got {value!r}")
        positive = ("seq_len", "batch_size", "grad_accum_steps", "max_steps", "eval_interval", "log_interval",
                    "checkpoint_interval", "keep_last", "max_bad_steps", "tensor_parallel")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("vocab_size", "threads", "warmup_steps", "eval_batches", "num_samples", "sample_tokens", "top_k",
                     "grad_clip",
                     "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (f.name for f in dataclasses.fields(self) if hints[f.name] is float):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be between 0 and 2**63 - 1, got {self.seed}")
        if self.threads > MAX_THREADS_PER_CORE * (os.cpu_count() or 1):
            raise ValueError(f"threads ({self.threads}) is far more than the {os.cpu_count()} CPU cores here: use "
                             f"at most the number of cores, or 0 for PyTorch's default")
        if self.spike_factor and self.spike_factor <= 1:
            raise ValueError(f"spike_factor must be 0 (off) or above 1, got {self.spike_factor}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, got {self.device!r}")
        for name in ("min_lr_ratio", "decay_fraction", "beta1", "beta2"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be strictly between 0 and 1, got {self.val_fraction}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.parallel not in PARALLEL:
            raise ValueError(f"parallel must be one of {', '.join(PARALLEL)}, got {self.parallel!r}")
        check_parallel_options(self.parallel, self.tensor_parallel, compile=self.compile, float8=self.float8,
                               dtype=self.dtype)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    # --- TOML ------------------------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a flat dict; unknown keys raise a ``ValueError`` naming the closest known key."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown key(s) in {source}: {', '.join(hints)}. Known keys: {', '.join(known)}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a TOML file (flat keys, or keys grouped in tables: tables are only for the reader's eye)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--config {path}: " + ("a folder, not a TOML file" if path.is_dir() else
                                                      "no such file"))
        return cls.from_toml_text(path.read_text(), source=str(path), **overrides)

    @classmethod
    def from_toml_text(cls, text: str, source: str = "TOML text", **overrides: Any) -> TrainConfig:
        """Like :meth:`from_toml`, from the text itself (``source`` names it in error messages)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{source} is not valid TOML: {error}") from error
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(value if isinstance(value, dict) else {key: value})
        flat.update(overrides)
        return cls.from_dict(flat, source=source)

    def to_toml(self) -> str:
        """The config as TOML, grouped in commented sections; ``from_toml`` reads it back to an equal config."""
        lines = ["# minillama training run: `minillama train --config THIS_FILE` repeats it."]
        group = None
        for f in dataclasses.fields(self):
            if f.metadata["group"] != group:
                group = f.metadata["group"]
                lines += ["", f"# --- {group}"]
            lines += [f"# {f.metadata['help']}", f"{f.name} = {_toml_value(getattr(self, f.name))}"]
        return "\n".join(lines) + "\n"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_run_dir(self) -> TrainConfig:
        """This config with ``run_dir`` filled in: the resumed run's folder, or ``runs/<model>-<corpus>-<time>``."""
        if self.run_dir:
            return self
        if self.resume:
            from minillama.train.training_checkpoint import resolve_checkpoint

            return self.replace(run_dir=str(resolve_checkpoint(self.resume).parent.parent))
        corpus = Path(self.corpus).stem if Path(self.corpus).exists() else self.corpus
        return self.replace(run_dir=str(Path("runs") / f"{self.model}-{corpus}-{time.strftime('%Y%m%d-%H%M%S')}"))

    def resume_changes(self, saved_toml: str, path: Path, saved_replicas: int = 1, replicas: int = 1) -> list[str]:
        """Refuse to resume a checkpoint of ``path`` trained on another model, corpus or tokenizer; return the
        fields whose change makes the continued run differ from an uninterrupted one.

        What fixes the data order is the global batch, ``batch_size x data-parallel replicas``: a sharded checkpoint
        may resume on another number of processes with the same global batch.
        """
        saved = TrainConfig.from_toml_text(saved_toml, source=f"the config saved in {path}")
        for name in ("model", "corpus", "tokenizer", "vocab_size"):
            if getattr(saved, name) != getattr(self, name):
                raise ValueError(f"cannot resume {path}: it was trained with {name}={getattr(saved, name)!r}, "
                                 f"this run asks for {getattr(self, name)!r}")
        changed = [name for name in ("seed", "seq_len", "grad_accum_steps", "val_fraction")
                   if getattr(saved, name) != getattr(self, name)]
        if saved.batch_size * saved_replicas != self.batch_size * replicas:
            changed.append("batch_size" if saved_replicas == replicas else "batch_size x world_size")
        return changed


def check_parallel_options(parallel: str, tensor_parallel: int, *, compile: bool = False, float8: bool = False,
                           dtype: str | None = None, amp_dtype: Any = "unknown", world_size: int | None = None
                           ) -> None:
    """Every rule about combining the parallel options, in one place (``TrainConfig``, ``ParallelConfig`` and the
    distributed trainer call it with what they know: the autocast dtype once the device is known, the world size
    once the job runs)."""
    if tensor_parallel < 1:
        raise ValueError(f"tensor_parallel must be positive, got {tensor_parallel}")
    if tensor_parallel > 1 and parallel != "fsdp":
        raise ValueError(f"tensor parallelism composes with FSDP only (a 2D mesh of data x tensor parallel ranks; "
                         f"DDP would all-reduce the slices of each weight as copies): add --parallel fsdp "
                         f"(got parallel={parallel!r})")
    if tensor_parallel > 1 and compile:
        raise ValueError("torch.compile of tensor-parallel blocks gives wrong gradients or crashes in the backward "
                         "with this PyTorch (tests/test_parallel_tensor.py records it): use --no-compile "
                         "(compile=False) with --tensor-parallel")
    if float8 and tensor_parallel > 1:
        raise ValueError("float8 with tensor parallelism needs torchao's float8 tensor-parallel layouts, which "
                         "minillama does not use: choose one of --float8 and --tensor-parallel")
    if float8 and dtype not in (None, "auto", "bfloat16"):
        raise ValueError(f"float8 computes everything but the block matmuls in bfloat16: use --dtype bfloat16 (or "
                         f"auto on a GPU), got dtype={dtype!r}")
    if amp_dtype != "unknown":
        import torch

        if float8 and amp_dtype != torch.bfloat16:
            raise ValueError(f"float8 computes everything but the block matmuls in bfloat16, which this device's "
                             f"autocast is not ({amp_dtype}): use --dtype bfloat16 on an H100 or Ada GPU")
        if parallel == "fsdp" and amp_dtype == torch.float16:
            raise ValueError("FSDP with float16 needs a sharded loss scaler that minillama does not have; use "
                             "--dtype bfloat16 (Ampere GPUs and later) or --parallel ddp")
    if world_size is not None:
        if parallel == "none" and world_size > 1:
            raise ValueError(f"{world_size} processes with --parallel none would train {world_size} identical "
                             f"copies of one run; use --parallel ddp or --parallel fsdp")
        if world_size % tensor_parallel:
            raise ValueError(f"{world_size} processes cannot form tensor-parallel groups of {tensor_parallel}: launch "
                             f"a multiple of {tensor_parallel} processes (torchrun --nproc_per_node), or pass a "
                             f"--tensor-parallel that divides {world_size} (a sharded checkpoint resumes on any "
                             f"layout)")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


# --- command line ----------------------------------------------------------------------------------------------------


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field (``max_steps`` -> ``--max-steps``), in the field's group.

    Flags default to "not given" (``argparse.SUPPRESS``), so :func:`config_from_args` can tell a flag that was typed
    from a default and apply the precedence defaults < file < flag.
    """
    hints = get_type_hints(TrainConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(TrainConfig):
        group = groups.setdefault(f.metadata["group"], parser.add_argument_group(f.metadata["group"]))
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default!r})"
        if hints[f.name] is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
        else:
            choices = f.metadata["choices"]
            group.add_argument(flag, dest=f.name, type=hints[f.name], default=argparse.SUPPRESS, help=help_text,
                               choices=choices, metavar="{" + ",".join(choices) + "}" if choices else f.name.upper())


def config_from_args(args: argparse.Namespace, config_file: str | Path | None = None) -> TrainConfig:
    """Defaults, then ``config_file`` (if any), then every flag that was given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {name: value for name, value in vars(args).items() if name in names}
    if config_file:
        return TrainConfig.from_toml(config_file, **given)
    return TrainConfig.from_dict(given, source="the command line")
