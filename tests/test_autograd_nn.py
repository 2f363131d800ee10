"""minillama.autograd.nn: parameter registration and names, state dicts, modes, and layers against torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minillama.autograd import Tensor, manual_seed, nn


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(dim)
        self.wq = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.wq(self.attention_norm(x))


class TinyModel(nn.Module):
    def __init__(self, vocab: int = 7, dim: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Block(dim) for _ in range(n_layers))
        self.norm = nn.RMSNorm(dim)
        self.output = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: np.ndarray) -> Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h))


EXPECTED_NAMES = [
    "tok_embeddings.weight",
    "layers.0.attention_norm.weight", "layers.0.wq.weight",
    "layers.1.attention_norm.weight", "layers.1.wq.weight",
    "norm.weight", "output.weight",
]


def test_parameters_are_registered_with_dotted_names_in_order() -> None:
    model = TinyModel()
    assert [name for name, _ in model.named_parameters()] == EXPECTED_NAMES
    assert len(list(model.parameters())) == 7
    assert model.num_parameters() == 7 * 4 + 2 * (4 + 16) + 4 + 28
    assert [name for name, _ in model.named_modules()][:4] == ["", "tok_embeddings", "layers", "layers.0"]
    assert isinstance(model.layers[1], Block) and len(model.layers) == 2


def test_reassigning_an_attribute_unregisters_it() -> None:
    layer = nn.Linear(3, 2)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_tied_weights_are_one_parameter_but_two_state_dict_entries() -> None:
    model = TinyModel()
    model.output.weight = model.tok_embeddings.weight
    assert len(list(model.parameters())) == 6
    assert "output.weight" in model.state_dict() and "tok_embeddings.weight" in model.state_dict()


def test_forgetting_super_init_gives_a_clear_error() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first in Broken"):
        Broken()


def test_state_dict_round_trip_copies_in_place() -> None:
    manual_seed(0)
    source, target = TinyModel(), TinyModel()
    state = source.state_dict()
    assert list(state) == EXPECTED_NAMES and all(isinstance(v, np.ndarray) for v in state.values())
    state["norm.weight"][0] = 123.0  # a copy: the model is unchanged
    assert source.norm.weight.data[0] == 1.0
    weight_array = target.output.weight.data
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert target.output.weight.data is weight_array  # loaded in place: optimizers keep their references
    tokens = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(source(tokens).data, target(tokens).data)


def test_load_state_dict_reports_every_problem_by_name() -> None:
    model = TinyModel()
    state = model.state_dict()
    del state["norm.weight"]
    state["layers.9.wq.weight"] = np.zeros((4, 4))
    state["output.weight"] = np.zeros((3, 4))
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "TinyModel" in message
    assert "missing keys: norm.weight" in message
    assert "unexpected keys: layers.9.wq.weight" in message
    assert "shape mismatch for output.weight: checkpoint (3, 4), model (7, 4)" in message
    state["output.weight"] = np.zeros((7, 4))
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["norm.weight"] and result.unexpected_keys == ["layers.9.wq.weight"]
    np.testing.assert_array_equal(model.output.weight.data, 0.0)


def test_train_eval_and_zero_grad_reach_every_submodule() -> None:
    model = TinyModel()
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert model.layers[0].wq.training
    model(np.array([[1, 2]])).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_float64_casts_parameters() -> None:
    model = TinyModel().to(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model(np.array([[0, 1]])).dtype == np.float64


def test_layers_match_torch_nn() -> None:
    manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    ours_linear = nn.Linear(5, 4)
    theirs_linear = torch.nn.Linear(5, 4)
    theirs_linear.load_state_dict({k: torch.from_numpy(v) for k, v in ours_linear.state_dict().items()})
    np.testing.assert_allclose(ours_linear(Tensor(x)).data, theirs_linear(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    ours_norm, theirs_norm = nn.RMSNorm(5, eps=1e-5), torch.nn.RMSNorm(5, eps=1e-5)
    assert list(ours_norm.state_dict()) == list(theirs_norm.state_dict()) == ["weight"]
    np.testing.assert_allclose(ours_norm(Tensor(x)).data, theirs_norm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5)
    ours_emb = nn.Embedding(10, 3)
    assert list(ours_emb.state_dict()) == list(torch.nn.Embedding(10, 3).state_dict())
    ids = np.array([[1, 9], [9, 0]])
    np.testing.assert_array_equal(ours_emb(ids).data, ours_emb.weight.data[ids])


def test_linear_initialisation_scale_matches_torch() -> None:
    manual_seed(0)
    weight = nn.Linear(400, 300).weight.data
    bound = 1 / np.sqrt(400)
    assert weight.min() >= -bound and weight.max() <= bound
    assert abs(weight.std() - bound / np.sqrt(3)) < 0.01 * bound  # the std of U(-b, b)


def test_repr_shows_the_tree() -> None:
    text = repr(TinyModel(n_layers=1))
    assert "(tok_embeddings): Embedding(7, 4)" in text
    assert "(wq): Linear(in_features=4, out_features=4, bias=False)" in text
    assert "(norm): RMSNorm(4, eps=1e-06)" in text
