"""FP8 training of the transformer blocks' matmuls through torchao's float8 (Micikevicius et al. 2022).

An H100 multiplies 8-bit float matrices at twice its bf16 rate. Only the three matmuls of each block ``nn.Linear``
read 8-bit copies of their operands (activations and weights in e4m3, gradients in e5m2), each scaled per tensor
from its current ``amax`` (dynamic scaling) and accumulated in fp32; master weights, AdamW's state, attention,
norms, the embedding and the output head stay in high precision. Chapter 8 derives the formats and the scaling;
:func:`to_float8` is the cast in four lines, and ``tests/test_float8.py`` checks torchao against it.

Applied from outside, like activation checkpointing and ``torch.compile`` (torchtitan's order: convert first):
:func:`convert_to_float8` swaps each ``nn.Linear`` for torchao's ``Float8Linear``, which keeps the same ``weight``,
so names and checkpoints do not change. Runs on NVIDIA GPUs of compute capability 8.9+ with ``pip install
torchao`` (:func:`float8_available` says why not elsewhere); ``emulate=True`` runs the same arithmetic in fp32 on
any device, which the tests use. With FSDP2, :func:`precompute_float8_scales_for_fsdp` serves the float8
all-gather (after every ``optimizer.step()``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import logging
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["BLOCK_LINEARS", "MIN_COMPUTE_CAPABILITY", "RECIPES", "convert_to_float8", "float8_available",
           "float8_linear_names", "float8_module_filter", "float8_linear_config",
           "precompute_float8_scales_for_fsdp", "to_float8"]

RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")
"""torchao's recipes: one scale per tensor (fastest; the only one that FSDP's float8 all-gather supports), one per
row (more accurate, e4m3 everywhere), and per row with the weight gradient computed in bf16 (the most accurate)."""

MIN_COMPUTE_CAPABILITY = (8, 9)
"""FP8 tensor cores: Ada (8.9), Hopper (9.0) and later. An A100 is 8.0."""

BLOCK_LINEARS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                 "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
"""The linears of a transformer block, by Meta's names: the ones :func:`convert_to_float8` may convert."""


@contextlib.contextmanager
def _quiet(*logger_names: str) -> Iterator[None]:
    """Raise these loggers to ERROR for the duration of the block."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _import_torchao_float8():
    """``torchao.float8``, imported without the warnings that a CPU-only PyTorch makes torchao print.

    On a CPU build, torchao's import logs that its CUDA extensions cannot load, and PyTorch logs a deprecation of how
    torchao registers an enum with ``torch.compile``: neither concerns float8 training, whose matmul is PyTorch's own
    ``torch._scaled_mm``. With a CUDA build torchao's messages are kept, since they would then mean something.
    """
    names = ["torch.utils._pytree"] + ([] if torch.cuda.is_available() else ["torchao"])
    with _quiet(*names):
        return importlib.import_module("torchao.float8")


def _torchao_version() -> str:
    try:
        return importlib.metadata.version("torchao")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _missing_software() -> str | None:
    """Why FP8 training cannot run with this PyTorch and torchao on any device, or ``None`` if they can."""
    try:
        _import_torchao_float8()
    except ImportError as error:
        return f"torchao is not installed (pip install torchao): {error}"
    except Exception as error:  # a torchao built for another PyTorch can fail to import in many ways
        return (f"torchao {_torchao_version()} does not import with PyTorch {torch.__version__} "
                f"({type(error).__name__}: {error}); install the torchao release made for this PyTorch")
    return None


def float8_available(device: torch.device | str | None = "cuda", *, emulate: bool = False) -> tuple[bool, str]:
    """Whether FP8 training can run on ``device``, and why (not): ``(True, "NVIDIA H100 ..., torchao 0.18.0")`` or
    ``(False, "<the reason, for a person>")``. Checks that torchao imports with this PyTorch, the device type, and the
    GPU's compute capability (at least :data:`MIN_COMPUTE_CAPABILITY`). ``None`` means the current CUDA device.
    With ``emulate`` (fp32 arithmetic on any device) only torchao is checked.

    >>> ok, reason = float8_available("cpu")
    >>> ok
    False
    """
    device = torch.device("cuda" if device is None else device)
    missing = _missing_software()
    if missing:
        return False, missing
    if emulate:
        return True, f"emulated in fp32 on {device.type!r}, torchao {_torchao_version()}"
    if device.type != "cuda":
        return False, (f"FP8 matmuls need an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper: H100); the "
                       f"device is {device.type!r} (emulate=True runs the same arithmetic in fp32, without a speed-up)")
    if not torch.cuda.is_available():
        return False, ("the device is 'cuda' but torch.cuda.is_available() is False (a CPU-only build of PyTorch, or "
                       "no GPU visible)")
    if torch.version.hip is not None:
        return False, ("this is a ROCm GPU: float8_available knows NVIDIA compute capabilities only (torchao's float8 "
                       "supports AMD MI300's e4m3fnuz; see its documentation)")
    index = device.index if device.index is not None else torch.cuda.current_device()
    name = torch.cuda.get_device_name(index)
    capability = torch.cuda.get_device_capability(index)
    if capability < MIN_COMPUTE_CAPABILITY:
        return False, (f"{name} has compute capability {capability[0]}.{capability[1]}; FP8 tensor cores need "
                       f"{MIN_COMPUTE_CAPABILITY[0]}.{MIN_COMPUTE_CAPABILITY[1]} or newer (Ada: 8.9, H100: 9.0); "
                       f"train in bf16 on this GPU")
    return True, f"{name}, compute capability {capability[0]}.{capability[1]}, torchao {_torchao_version()}"


def float8_module_filter(module: nn.Module, fqn: str) -> bool:
    """Whether the linear ``module`` named ``fqn`` (``"layers.3.attention.wq"``) should compute in FP8.

    Yes for the seven linears of each transformer block (:data:`BLOCK_LINEARS`) whose in and out features are both
    multiples of 16 (``torch._scaled_mm``'s requirement); no for the output head, anything outside ``layers``, and
    anything else. Example: ``output`` (dim -> vocab) -> False; ``layers.0.attention.wk`` with 64 -> 24 features ->
    False; ``layers.0.feed_forward.w2`` with 192 -> 64 -> True.
    """
    parts = fqn.split(".")
    in_block = len(parts) == 4 and parts[0] == "layers" and parts[1].isdigit() and ".".join(parts[2:]) in BLOCK_LINEARS
    return (in_block and isinstance(module, nn.Linear)
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def float8_linear_config(recipe: str = "tensorwise", *, enable_fsdp_float8_all_gather: bool = False,
                         emulate: bool = False):
    """torchao's ``Float8LinearConfig`` for ``recipe`` (one of :data:`RECIPES`).

    ``enable_fsdp_float8_all_gather``: under FSDP2, cast each weight's shard to e4m3 before the all-gather (half the
    bytes of bf16; ``"tensorwise"`` only). ``emulate``: compute the FP8 matmuls in fp32 from the same 8-bit values,
    on any device.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown float8 recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if enable_fsdp_float8_all_gather and recipe != "tensorwise":
        raise ValueError(f"FSDP's float8 all-gather needs one scale per weight: recipe 'tensorwise', not {recipe!r}")
    config = _import_torchao_float8().Float8LinearConfig.from_recipe_name(recipe)
    return dataclasses.replace(config, enable_fsdp_float8_all_gather=enable_fsdp_float8_all_gather, emulate=emulate)


def _training_device(model: nn.Module) -> torch.device:
    """Where ``model`` will train: its parameters' device, or CUDA for a model built on the meta device."""
    device = next(model.parameters()).device
    return torch.device("cuda") if device.type == "meta" else device


def convert_to_float8(model: nn.Module, *, recipe: str = "tensorwise", enable_fsdp_float8_all_gather: bool = False,
                      emulate: bool = False, device: torch.device | str | None = None) -> nn.Module:
    """Swap the block linears of ``model`` (a ``Llama``) for torchao's ``Float8Linear``, in place; returns ``model``.

    Which linears: :func:`float8_module_filter` (the output head stays in high precision). Parameter names and
    ``state_dict`` keys are unchanged. Call it before activation checkpointing, ``torch.compile``, FSDP and the
    optimizer (it may replace weight parameters: with ``enable_fsdp_float8_all_gather`` each becomes a new
    ``nn.Parameter`` wrapping the same storage). ``model`` may be on the meta device.

    Raises ``ValueError`` with the reason when FP8 cannot run on ``device`` (default: the model's device, or CUDA
    for a model on the meta device): it never silently leaves the model in bf16. To decide first, call
    :func:`float8_available`. ``emulate``: compute in fp32 from the same 8-bit values, on any device.
    """
    ok, reason = float8_available(device if device is not None else _training_device(model), emulate=emulate)
    if not ok:
        raise ValueError(f"cannot train in FP8 here: {reason}")
    converted = float8_linear_names(model)
    if converted:
        raise ValueError(f"the model already computes in float8 ({len(converted)} linears): convert it once")
    config = float8_linear_config(recipe, enable_fsdp_float8_all_gather=enable_fsdp_float8_all_gather,
                                  emulate=emulate)
    float8 = _import_torchao_float8()
    float8.convert_to_float8_training(model, module_filter_fn=float8_module_filter, config=config)
    if not float8_linear_names(model):
        raise ValueError("no linear of the model can compute in FP8: the blocks' in and out features must be "
                         "multiples of 16")
    return model


def float8_linear_names(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that compute in FP8 (``[]`` if none, or if torchao is not installed)."""
    try:
        float8 = _import_torchao_float8()
    except ImportError:
        return []
    return [name for name, module in model.named_modules() if isinstance(module, float8.float8_linear.Float8Linear)]


def precompute_float8_scales_for_fsdp(model: nn.Module) -> None:
    """After ``optimizer.step()``: compute every FP8 weight's scale for the next all-gathers, in one all-reduce.

    Only for a model converted with ``enable_fsdp_float8_all_gather`` and sharded with FSDP2 (a no-op otherwise).
    Call it after *every* step once you call it at all: the all-gathers use the last scales it computed.
    """
    _import_torchao_float8().precompute_float8_dynamic_scale_for_fsdp(model)


def to_float8(x: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-tensor scaling: ``(x_fp8, scale)`` with ``x ~= x_fp8.float() / scale`` (any device).

    The scale maps ``x``'s largest magnitude onto the format's largest value; values are rounded to the nearest
    representable one, and clamped to the format's range. Example: ``x = [0.5, -2.0]`` in e4m3 (max 448):
    ``scale = 448 / 2 = 224``, ``x * scale = [112, -448]``, both representable, so ``x`` comes back exactly.
    """
    largest = torch.finfo(dtype).max
    amax = x.detach().abs().max().to(torch.float64).clamp(min=1e-12)  # float64: the scale as torchao computes it
    scale = (largest / amax).to(torch.float32)
    return (x.float() * scale).clamp(-largest, largest).to(dtype), scale
