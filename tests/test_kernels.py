"""RMSNorm kernels vs a float64 reference: the PyTorch fallback everywhere, Triton on a GPU (or its CPU interpreter)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from minillama import kernels
from minillama.kernels import rmsnorm_triton
from minillama.kernels.rmsnorm import RMSNormFunction, rms_norm_reference, rms_norm_torch
from minillama.model import RMSNorm

EPS = 1e-5
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
needs_gpu_triton = pytest.mark.skipif(
    not (torch.cuda.is_available() and TRITON_INSTALLED),
    reason="needs a CUDA GPU and triton (this machine: "
           f"CUDA {'yes' if torch.cuda.is_available() else 'no'}, triton {'yes' if TRITON_INSTALLED else 'no'})",
)


def reference64(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, eps: float = EPS):
    """Output and gradients of RMSNorm computed in float64 by autograd, from the same (rounded) inputs."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    y64 = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * w64
    y64.backward(grad.double())
    return y64.detach(), x64.grad, w64.grad


def run_and_grad(fn, x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    y = fn(x, weight, EPS)
    y.backward(grad)
    return y.detach(), x.grad, weight.grad


def make_inputs(shape, dtype, weight_dtype, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(shape, generator=generator)).to(device=device, dtype=dtype)
    weight = (1 + 0.5 * torch.randn(shape[-1], generator=generator)).to(device=device, dtype=weight_dtype)
    grad = torch.randn(shape, generator=generator).to(device=device, dtype=torch.promote_types(dtype, weight_dtype))
    return x, weight, grad


# (x dtype, weight dtype, relative tolerance): bf16 outputs are rounded to 8 bits of mantissa, so 2^-7 relative.
CASES = [(torch.float32, torch.float32, 1e-5), (torch.bfloat16, torch.float32, 1e-2),
         (torch.bfloat16, torch.bfloat16, 2e-2)]


def assert_close_to_reference(result, reference, rtol):
    for name, got, want in zip(("output", "grad x", "grad weight"), result, reference, strict=True):
        scale = want.abs().max().item()
        error = (got.double() - want).abs().max().item()
        assert error <= rtol * scale, f"{name}: max error {error:.3g} > {rtol} x max |value| {scale:.3g}"


@pytest.mark.parametrize("shape", [(2, 5, 64), (7, 100), (1, 3, 4096)])
@pytest.mark.parametrize("dtype,weight_dtype,rtol", CASES)
def test_fallback_matches_float64(shape, dtype, weight_dtype, rtol):
    x, weight, grad = make_inputs(shape, dtype, weight_dtype)
    result = run_and_grad(rms_norm_torch, x, weight, grad)
    assert result[0].dtype == torch.promote_types(dtype, weight_dtype)
    assert result[1].dtype == dtype and result[2].dtype == weight_dtype
    assert_close_to_reference(result, reference64(x, weight, grad), rtol)


def test_fallback_backward_by_finite_differences():
    x, weight, _ = make_inputs((3, 4, 16), torch.float64, torch.float64)
    assert torch.autograd.gradcheck(RMSNormFunction.apply, (x.requires_grad_(), weight.requires_grad_(), EPS))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fallback_forward_is_the_reference_and_the_model_norm(dtype):
    x, weight, _ = make_inputs((2, 6, 32), dtype, torch.float32)
    norm = RMSNorm(32, eps=EPS)
    with torch.no_grad():
        norm.weight.copy_(weight)
        assert torch.equal(rms_norm_torch(x, weight, EPS), rms_norm_reference(x, weight, EPS))
        assert torch.equal(kernels.rms_norm(x, weight, EPS), norm(x))


def saved_bytes(fn, x, weight) -> int:
    """Bytes autograd keeps for the backward of ``fn(x, weight)``, parameters excluded, each storage once."""
    storages = {}

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() != weight.untyped_storage().data_ptr():
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(x, weight, EPS)
    return sum(storages.values())


def test_fallback_saves_only_x_and_one_float_per_row():
    x, weight, _ = make_inputs((4, 8, 64), torch.bfloat16, torch.float32)
    x.requires_grad_()
    weight.requires_grad_()
    rows, dim = 4 * 8, 64
    assert saved_bytes(rms_norm_torch, x, weight) == rows * dim * 2 + rows * 4  # x in bf16, r in fp32
    assert saved_bytes(rms_norm_reference, x, weight) > 4 * rows * dim  # autograd keeps fp32 intermediates


def test_switch_and_dispatch_on_cpu(monkeypatch):
    x, weight, _ = make_inputs((2, 16), torch.float32, torch.float32)
    assert not kernels.uses_triton(x)  # a CPU tensor never goes to Triton
    previous = kernels.triton_enabled()
    try:
        kernels.set_triton_enabled(False)
        assert not kernels.triton_enabled() and not kernels.uses_triton(x)
    finally:
        kernels.set_triton_enabled(previous)
    assert kernels.triton_available() == (TRITON_INSTALLED and torch.cuda.is_available())
    assert torch.equal(kernels.rms_norm(x, weight), rms_norm_torch(x, weight))


def test_use_fused_rmsnorm_keeps_outputs_and_names():
    from minillama.config import get_preset
    from minillama.model import Llama

    torch.manual_seed(0)
    model = Llama(get_preset("nano"))
    tokens = torch.randint(0, 256, (2, 12))
    names = list(model.state_dict())
    expected = model(tokens)
    kernels.use_fused_rmsnorm(model)
    assert list(model.state_dict()) == names
    torch.testing.assert_close(model(tokens), expected, rtol=0, atol=1e-6)


def test_triton_module_imports_without_triton():
    if TRITON_INSTALLED:
        assert rmsnorm_triton.AVAILABLE
    else:
        assert not rmsnorm_triton.AVAILABLE
        with pytest.raises(RuntimeError, match="Triton is not installed"):
            rmsnorm_triton.rms_norm_triton(torch.ones(2, 4), torch.ones(4))


@needs_gpu_triton
@pytest.mark.parametrize("shape", [(4, 37, 4096), (3, 1000), (2, 8, 16384), (1, 1, 64)])
@pytest.mark.parametrize("dtype,weight_dtype,rtol", CASES)
def test_triton_matches_float64_on_gpu(shape, dtype, weight_dtype, rtol):
    x, weight, grad = make_inputs(shape, dtype, weight_dtype, device="cuda")
    assert kernels.uses_triton(x)
    result = run_and_grad(kernels.rms_norm, x, weight, grad)
    assert result[0].dtype == torch.promote_types(dtype, weight_dtype)
    assert result[1].dtype == dtype and result[2].dtype == weight_dtype
    # dw sums over up to 148 rows of values: allow the fp32 sum order a little more room.
    assert_close_to_reference([t.cpu() for t in result], reference64(x.cpu(), weight.cpu(), grad.cpu()), 2 * rtol)
    fallback = run_and_grad(rms_norm_torch, x, weight, grad)
    torch.testing.assert_close(result[0], fallback[0], rtol=rtol, atol=rtol)


@pytest.mark.skipif(not TRITON_INSTALLED, reason="triton is not installed (the interpreter runs the kernels on CPU)")
def test_triton_kernels_under_the_cpu_interpreter():
    """``TRITON_INTERPRET=1`` runs the same kernels on CPU tensors with numpy: checks the kernels without a GPU."""
    script = textwrap.dedent("""
        import torch
        from minillama.kernels.rmsnorm_triton import rms_norm_triton
        from minillama.kernels.rmsnorm import rms_norm_reference
        torch.manual_seed(0)
        for dtype, shape in [(torch.float32, (3, 5, 48)), (torch.bfloat16, (7, 100))]:
            x = (3 * torch.randn(shape)).to(dtype).requires_grad_()
            w = (1 + 0.5 * torch.randn(shape[-1])).requires_grad_()
            g = torch.randn(shape)
            rms_norm_triton(x, w, 1e-5).backward(g)
            dx, dw = x.grad, w.grad
            x.grad = w.grad = None
            rms_norm_reference(x, w, 1e-5).backward(g)
            tol = 1e-5 if dtype == torch.float32 else 3e-2
            torch.testing.assert_close(dx.float(), x.grad.float(), rtol=tol, atol=tol)
            torch.testing.assert_close(dw, w.grad, rtol=tol, atol=tol * shape[0])
        print("ok")
    """)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
