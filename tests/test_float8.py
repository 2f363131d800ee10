"""FP8 training through torchao (``minillama.kernels.float8``).

On any machine: which linears convert (by hand from the model's shapes), that names and checkpoints do not change,
and the refusals with their reasons. With torchao installed, its emulated FP8 (the same 8-bit values and scales,
the matmuls in fp32) runs on the CPU: its linears are checked against the arithmetic of the module docstring written
out by hand, the converted model against the fp32 one, and FSDP2's float8 all-gather on 2 gloo processes. On a GPU of
compute capability 8.9+ the real FP8 kernels run against bf16.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from _parallel_helpers import spawn
from torch import nn

from minillama.config import ModelConfig, get_preset
from minillama.kernels.float8 import (
    BLOCK_LINEARS,
    RECIPES,
    convert_to_float8,
    float8_available,
    float8_linear_config,
    float8_linear_names,
    float8_module_filter,
    precompute_float8_scales_for_fsdp,
    to_float8,
)
from minillama.model import Llama
from minillama.train.step import cross_entropy_loss

HAS_TORCHAO = float8_available("cpu", emulate=True)[0]  # imports torchao quietly where it is installed
CUDA_FP8, CUDA_FP8_REASON = float8_available("cuda")
needs_cuda_fp8 = pytest.mark.skipif(not CUDA_FP8, reason=f"needs FP8 tensor cores: {CUDA_FP8_REASON}")
BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_train_bench.py"


@pytest.fixture
def torchao_float8():
    return pytest.importorskip("torchao.float8", reason="torchao is not installed (pip install torchao)")


def block_linears(n_layers: int, names=BLOCK_LINEARS) -> list[str]:
    return [f"layers.{i}.{name}" for i in range(n_layers) for name in names]


def odd_config() -> ModelConfig:
    """dim 96, 12 heads of 8, 3 kv heads, SwiGLU hidden 264: wk/wv are 96 -> 24 and w1/w2/w3 touch 264, neither a
    multiple of 16; wq and wo are 96 -> 96."""
    config = ModelConfig(dim=96, n_layers=2, n_heads=12, n_kv_heads=3, vocab_size=128, multiple_of=24)
    assert (config.head_dim, config.ffn_hidden_dim) == (8, 264)
    return config


def batch(vocab_size: int = 256, size: int = 4, seq_len: int = 64, seed: int = 0):
    tokens = torch.randint(0, vocab_size, (size, seq_len + 1), generator=torch.Generator().manual_seed(seed))
    return tokens[:, :-1], tokens[:, 1:]  # (B, T + 1) -> inputs (B, T), next-token targets (B, T)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


# --- which layers, and the refusals: no torchao needed ---------------------------------------------------------------


def test_filter_picks_the_seven_block_linears_of_nano_and_not_the_head():
    model = Llama(get_preset("nano"))  # dim 64, kv 2 x 16, hidden 192: every block linear is a multiple of 16
    picked = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and float8_module_filter(module, name)]
    assert picked == block_linears(2)
    assert not float8_module_filter(model.output, "output")
    assert not float8_module_filter(model.norm, "norm")


def test_filter_leaves_linears_whose_features_are_not_multiples_of_16():
    model = Llama(odd_config())
    picked = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and float8_module_filter(module, name)]
    assert picked == block_linears(2, ("attention.wq", "attention.wo"))


def test_on_cpu_float8_is_unavailable_and_says_why():
    ok, reason = float8_available("cpu")
    assert not ok
    if HAS_TORCHAO:
        assert "compute capability 8.9" in reason and "'cpu'" in reason and "emulate=True" in reason
    else:
        assert reason.startswith("torchao is not installed (pip install torchao)")
    if not torch.cuda.is_available():
        ok, reason = float8_available("cuda")
        assert not ok and ("torch.cuda.is_available() is False" in reason or "torchao" in reason)


def test_conversion_refuses_on_cpu_and_leaves_the_model_alone():
    model = Llama(get_preset("nano"))
    with pytest.raises(ValueError, match=r"cannot train in FP8 here: .*(compute capability 8\.9|torchao)"):
        convert_to_float8(model)
    assert all(type(module) is nn.Linear for module in model.modules() if isinstance(module, nn.Linear))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: a meta model would train on it")
def test_a_meta_model_is_checked_for_the_gpu_it_will_train_on():
    with torch.device("meta"):
        model = Llama(get_preset("llama3-8b"))
    with pytest.raises(ValueError, match="cannot train in FP8 here"):
        convert_to_float8(model)


def test_without_torchao_everything_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.float8", None)  # how Python's import system marks a missing module
    ok, reason = float8_available("cuda", emulate=True)
    assert not ok and reason.startswith("torchao is not installed (pip install torchao)")
    model = Llama(get_preset("nano"))
    with pytest.raises(ValueError, match=r"pip install torchao"):
        convert_to_float8(model, emulate=True)
    assert float8_linear_names(model) == []


def test_recipe_and_all_gather_are_validated():
    with pytest.raises(ValueError, match="unknown float8 recipe 'fp8'"):
        float8_linear_config("fp8")
    with pytest.raises(ValueError, match="'tensorwise', not 'rowwise'"):
        float8_linear_config("rowwise", enable_fsdp_float8_all_gather=True)


def test_to_float8_by_hand():
    data, scale = to_float8(torch.tensor([0.5, -2.0]))
    assert float(scale) == 224.0  # 448 / amax
    assert data.dtype == torch.float8_e4m3fn and data.float().tolist() == [112.0, -448.0]
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    for dtype, mantissa_bits in ((torch.float8_e4m3fn, 3), (torch.float8_e5m2, 2)):
        data, scale = to_float8(x, dtype)
        assert data.float().abs().max() == torch.finfo(dtype).max  # the largest value lands on the format's largest
        back = data.float() / scale
        normal = x.abs() * scale >= torch.finfo(dtype).smallest_normal
        # round to nearest: at most half a unit in the last place, 2^-(mantissa bits + 1) of the value
        assert ((back - x).abs() <= x.abs() * 2.0 ** -(mantissa_bits + 1))[normal].all()
        assert (back - x)[normal].abs().max() > 0  # and it does round


# --- torchao's linears, emulated on the CPU --------------------------------------------------------------------------


def test_conversion_swaps_the_block_linears_and_keeps_names_and_checkpoints(torchao_float8):
    torch.manual_seed(0)
    model = Llama(get_preset("nano"))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert convert_to_float8(model, emulate=True) is model
    assert float8_linear_names(model) == block_linears(2)
    assert all(isinstance(model.get_submodule(name), torchao_float8.float8_linear.Float8Linear)
               for name in block_linears(2))
    assert type(model.output) is nn.Linear and type(model.tok_embeddings) is nn.Embedding
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[name], before[name]) for name in before)
    Llama(get_preset("nano")).load_state_dict(after)  # a converted model's checkpoint loads into a plain one
    model.load_state_dict(before)  # and a plain one's into a converted one
    with pytest.raises(ValueError, match="convert it once"):
        convert_to_float8(model, emulate=True)


def test_only_the_multiples_of_16_convert(torchao_float8):
    model = convert_to_float8(Llama(odd_config()), emulate=True)
    assert float8_linear_names(model) == block_linears(2, ("attention.wq", "attention.wo"))
    with pytest.raises(ValueError, match="multiples of 16"):
        convert_to_float8(Llama(ModelConfig(dim=72, n_layers=1, n_heads=6, n_kv_heads=3, vocab_size=64,
                                            multiple_of=12)), emulate=True)


@pytest.mark.parametrize("all_gather", [False, True])
def test_llama3_8b_on_the_meta_device(torchao_float8, all_gather):
    config = get_preset("llama3-8b")
    with torch.device("meta"):
        model = Llama(config)
    names = [name for name, _ in model.named_parameters()]
    convert_to_float8(model, emulate=True, enable_fsdp_float8_all_gather=all_gather)
    assert float8_linear_names(model) == block_linears(32)  # 4096 -> 4096, 1024 and 14336: all multiples of 16
    assert type(model.output) is nn.Linear  # 4096 -> 128256, also a multiple of 16: left out by name
    assert [name for name, _ in model.named_parameters()] == names
    assert model.num_params() == config.num_params()
    wq = model.layers[31].attention.wq
    assert wq.weight.is_meta and wq.config.enable_fsdp_float8_all_gather is all_gather
    assert (type(wq.weight).__name__ == "WeightWithDynamicFloat8CastTensor") is all_gather


def test_emulated_linear_is_the_arithmetic_of_the_docstring(torchao_float8):
    """tensorwise: forward in e4m3 x e4m3, dL/dx = g_e5m2 @ W_e4m3, dL/dW = g_e5m2^T @ x_e4m3, each operand scaled
    by 448 (or 57344) / amax and divided back: torchao's emulated layer and this hand version agree exactly."""
    torch.manual_seed(0)
    model = convert_to_float8(Llama(get_preset("nano")), emulate=True)
    linear = model.layers[0].feed_forward.w2  # 192 -> 64
    x = torch.randn(3, 5, 192, requires_grad=True)
    y = linear(x)
    grad = torch.randn_like(y)
    y.backward(grad)

    def dequantized(t, dtype=torch.float8_e4m3fn):
        data, scale = to_float8(t, dtype)
        return data.float() / scale

    x2, w, g2 = dequantized(x.detach().reshape(-1, 192)), dequantized(linear.weight), \
        dequantized(grad.reshape(-1, 64), torch.float8_e5m2)  # (B*T, in), (out, in), (B*T, out)
    torch.testing.assert_close(y.detach().reshape(-1, 64), x2 @ w.t(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x.grad.reshape(-1, 192), g2 @ w, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(linear.weight.grad, g2.t() @ x2, rtol=1e-6, atol=1e-6)


def test_emulated_model_is_close_to_fp32_and_rowwise_is_closer(torchao_float8):
    """Three mantissa bits round each operand by up to 1/16; over whole dot products the errors average out: the
    logits of nano stay within 5% of fp32 (measured: 1.8%), more than bf16 autocast's error (0.3%), and the
    gradients within 10% (measured: 4% tensorwise, 3% for the rowwise recipes)."""
    torch.manual_seed(0)
    reference = Llama(get_preset("nano"))
    inputs, targets = batch()
    logits = reference(inputs)
    cross_entropy_loss(logits, targets).backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_error = relative_error(reference(inputs), logits)
    grad_errors = {}
    for recipe in RECIPES:
        model = convert_to_float8(copy.deepcopy(reference), recipe=recipe, emulate=True)
        model.zero_grad()
        fp8_logits = model(inputs)
        cross_entropy_loss(fp8_logits, targets).backward()
        assert bf16_error < relative_error(fp8_logits, logits) < 0.05, recipe
        grads, reference_grads = (torch.cat([p.grad.flatten() for p in m.parameters()]) for m in (model, reference))
        grad_errors[recipe] = relative_error(grads, reference_grads)
    assert all(error < 0.1 for error in grad_errors.values()), grad_errors
    assert grad_errors["rowwise_with_gw_hp"] < grad_errors["rowwise"] < grad_errors["tensorwise"], grad_errors


def test_emulated_training_follows_fp32(torchao_float8):
    inputs, targets = batch()
    losses = {}
    for float8 in (False, True):
        torch.manual_seed(0)
        model = Llama(get_preset("nano"))
        if float8:
            convert_to_float8(model, emulate=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses[float8] = []
        for _ in range(10):
            loss = cross_entropy_loss(model(inputs), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[float8].append(float(loss.detach()))
    assert abs(losses[True][0] - losses[False][0]) < 0.01  # same weights: only the rounding differs
    assert losses[True][-1] < 0.6 * losses[True][0]  # measured 5.57 -> 2.31 (fp32: 5.57 -> 2.40)
    assert abs(losses[True][-1] - losses[False][-1]) < 0.3


def test_gpu_bench_smoke_with_float8(torchao_float8):
    import subprocess

    result = subprocess.run([sys.executable, str(BENCH), "--smoke", "--float8", "--json"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(result.stdout)
    assert record["float8"] == "tensorwise, emulated" and record["compile_backend"] == "aot_eager"
    assert record["losses"][-1] < record["losses"][0]


# --- FSDP2: 2 gloo processes -----------------------------------------------------------------------------------------

FSDP_VARIANTS = {"gather fp32, cast after": (False, False), "gather fp8": (True, False),
                 "gather fp8, precomputed scales": (True, True)}


def fsdp_float8_scenario(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Each variant: nano, emulated FP8, FSDP2 per block, 4 AdamW steps on a global batch of 4 sequences."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from minillama.parallel.distributed import all_reduce_sum, destroy_distributed, init_distributed
    from minillama.parallel.parallelize import apply_fsdp, parallel_mesh

    init_distributed("cpu")
    mesh = parallel_mesh(1)
    inputs, targets = batch(size=2 * world_size, seq_len=32)
    inputs, targets = inputs[2 * rank:2 * rank + 2], targets[2 * rank:2 * rank + 2]  # this rank's 2 sequences
    record = {}
    for name, (all_gather, precompute) in FSDP_VARIANTS.items():
        torch.manual_seed(0)
        model = convert_to_float8(Llama(get_preset("nano")), emulate=True, enable_fsdp_float8_all_gather=all_gather)
        apply_fsdp(model, mesh, MixedPrecisionPolicy())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(4):
            loss = cross_entropy_loss(model(inputs), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if precompute:
                precompute_float8_scales_for_fsdp(model)
            losses.append(float(all_reduce_sum(loss.detach())) / world_size)
        weight = model.layers[1].feed_forward.w1.weight  # a DTensor: this rank's rows of the (192, 64) weight
        local = weight._local_tensor  # the shard itself (to_local() returns a view, without the precomputed scale)
        record[name] = {
            "losses": losses,
            "local_type": type(local).__name__,
            "gathered_dtype": str(local.fsdp_pre_all_gather(mesh)[0][0].dtype) if all_gather else None,
            "scale": float(local._precomputed_scale) if precompute else None,
            "expected_scale": 448.0 / float(weight.full_tensor().abs().max()),
        }
        if precompute:  # a sharded checkpoint of the float8 model, and its whole weights to compare with
            dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=Path(out_dir, "checkpoint"))
            whole = {name: tensor.full_tensor() for name, tensor in model.state_dict().items()}
            if rank == 0:
                torch.save(whole, Path(out_dir, "whole.pt"))
                Path(out_dir, "checkpoint", "config.json").write_text(json.dumps(get_preset("nano").to_dict()))
    Path(out_dir, f"rank_{rank}.json").write_text(json.dumps(record))
    destroy_distributed()


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    """One spawn of 2 processes runs :func:`fsdp_float8_scenario` for the tests below; its output folder."""
    pytest.importorskip("torchao.float8", reason="torchao is not installed (pip install torchao)")
    out_dir = tmp_path_factory.mktemp("fsdp_float8")
    spawn(fsdp_float8_scenario, str(out_dir))
    return out_dir


def test_fsdp_float8_all_gather_matches_casting_after_the_gather(fsdp_run):
    """The float8 all-gather casts each shard with the scale of the whole weight (an all-reduced amax), so the
    gathered weight is the one that casting after an fp32 gather gives: the three variants train identically."""
    ranks = [json.loads((fsdp_run / f"rank_{rank}.json").read_text()) for rank in range(2)]
    for record in ranks:
        reference = record["gather fp32, cast after"]
        assert reference["local_type"] == "Tensor" and reference["losses"][-1] < reference["losses"][0]
        for name in ("gather fp8", "gather fp8, precomputed scales"):
            assert record[name]["local_type"] == "WeightWithDynamicFloat8CastTensor"
            assert record[name]["gathered_dtype"] == "torch.float8_e4m3fn"
            assert record[name]["losses"] == pytest.approx(reference["losses"], rel=1e-6)
        precomputed = record["gather fp8, precomputed scales"]
        assert precomputed["scale"] == pytest.approx(precomputed["expected_scale"], rel=1e-6)
    assert ranks[0]["gather fp8"]["losses"] == ranks[1]["gather fp8"]["losses"]  # the rank-mean loss


def test_fsdp_float8_checkpoint_consolidates_into_a_plain_model(fsdp_run, tmp_path):
    """With the float8 all-gather, DCP pickles torchao's weight wrapper into the shards: reading them needs torchao
    imported (it registers the class with ``torch.load``, as the fixture's import did), and gives the same names
    and weights as the float8 model, in our single-device format."""
    from minillama.parallel.sharded_checkpoint import consolidate
    from minillama.weights import load_state

    config, state_dict = load_state(consolidate(fsdp_run / "checkpoint", tmp_path / "consolidated"))
    whole = torch.load(fsdp_run / "whole.pt", weights_only=True)
    assert config == get_preset("nano") and sorted(state_dict) == sorted(whole)
    assert all(torch.equal(state_dict[name], tensor) for name, tensor in whole.items())


# --- real FP8 on a GPU of compute capability 8.9+ --------------------------------------------------------------------


@needs_cuda_fp8
@pytest.mark.parametrize("recipe", RECIPES)
def test_fp8_forward_backward_close_to_bf16_on_gpu(recipe):
    torch.manual_seed(0)
    with torch.device("cuda"):
        reference = Llama(get_preset("nano"))
    model = convert_to_float8(copy.deepcopy(reference), recipe=recipe)
    inputs, targets = (t.cuda() for t in batch(size=8, seq_len=128))
    grads = {}
    outputs = {}
    for name, module in (("bf16", reference), ("fp8", model)):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs[name] = module(inputs)
        cross_entropy_loss(outputs[name], targets).backward()
        grads[name] = torch.cat([p.grad.flatten() for p in module.parameters()])
    assert outputs["fp8"].dtype == torch.bfloat16
    assert relative_error(outputs["fp8"], outputs["bf16"]) < 0.05
    assert relative_error(grads["fp8"], grads["bf16"]) < 0.1


@needs_cuda_fp8
def test_fp8_training_with_compile_lowers_the_loss_on_gpu():
    inputs, targets = (t.cuda() for t in batch(size=8, seq_len=128))
    losses = {}
    for float8 in (False, True):
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = Llama(get_preset("nano"))
        if float8:
            convert_to_float8(model)
        for block in model.layers:
            block.compile()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
        losses[float8] = []
        for _ in range(10):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(inputs)
            loss = cross_entropy_loss(logits, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[float8].append(float(loss.detach()))
    assert losses[True][-1] < 0.6 * losses[True][0]
    assert abs(losses[True][-1] - losses[False][-1]) < 0.3


# --- the training command: --float8 is a TrainConfig field, applied by minillama.parallel ---------------------------


def test_float8_config_is_validated():
    from minillama.train.config import TrainConfig

    assert TrainConfig(float8=True, dtype="bfloat16").float8
    with pytest.raises(ValueError, match="--dtype bfloat16"):
        TrainConfig(float8=True, dtype="float16")
    with pytest.raises(ValueError, match="tensor-parallel"):
        TrainConfig(float8=True, parallel="fsdp", tensor_parallel=2)


def test_float8_needs_bf16_autocast_and_no_tensor_parallelism():
    from minillama.parallel.parallelize import ParallelConfig
    from minillama.train.config import TrainConfig

    config = TrainConfig(float8=True, parallel="fsdp")
    with pytest.raises(ValueError, match="bfloat16"):  # "auto" on a CPU is float32
        ParallelConfig.from_train_config(config, None)
    assert ParallelConfig.from_train_config(config, torch.bfloat16).float8
    with pytest.raises(ValueError, match="tensor parallelism"):
        ParallelConfig(data_parallel="fsdp", tensor_parallel=2, float8=True)


def test_float8_run_on_a_cpu_stops_with_the_reason(tmp_path, monkeypatch, capsys):
    """``minillama train --float8`` where FP8 cannot run: an error that says why, before any step."""
    from minillama.cli import main

    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("All the world's a stage, and all the men and women merely players. " * 400)
    code = main(["train", "--model", "nano", "--corpus", str(corpus), "--device", "cpu", "--dtype", "bfloat16",
                 "--float8", "--max-steps", "2", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert code != 0
    error = capsys.readouterr().err
    assert "cannot train in FP8 here" in error and ("GPU" in error or "torchao" in error)


def test_the_plain_trainer_refuses_float8_it_cannot_apply(tmp_path):
    from minillama.train.config import TrainConfig
    from minillama.train.trainer import Trainer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question. " * 400)
    config = TrainConfig(model="nano", corpus=str(corpus), float8=True, device="cpu", run_dir=str(tmp_path / "r"),
                         progress=False)
    with pytest.raises(ValueError, match="float8 is applied by minillama.parallel"):
        Trainer(config, log=lambda text: None)
