"""minillama.numpy_llama sampling and training loop: against hand calculations and a corpus a model must learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minillama.autograd import manual_seed
from minillama.config import get_preset
from minillama.numpy_llama import (
    Llama,
    TrainConfig,
    bits_per_byte,
    estimate_loss,
    generate,
    get_batch,
    make_optimizer,
    sample_next_token,
)
from minillama.numpy_llama.train import main, train


def test_greedy_and_top1_pick_the_argmax():
    logits = np.array([[1.0, 3.0, 2.0], [0.5, -1.0, 0.0]])
    np.testing.assert_array_equal(sample_next_token(logits, temperature=0), [1, 0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        np.testing.assert_array_equal(sample_next_token(logits, temperature=2.0, top_k=1, rng=rng), [1, 0])


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.5, None), (2.0, 2)])
def test_sampling_frequencies_follow_the_tempered_softmax(temperature, top_k):
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    expected = np.exp(logits[0] / temperature)
    if top_k is not None:
        expected[np.argsort(expected)[:-top_k]] = 0
    expected /= expected.sum()
    rng = np.random.default_rng(1)
    n = 20_000
    draws = np.concatenate([sample_next_token(np.repeat(logits, 1000, axis=0), temperature, top_k, rng)
                            for _ in range(n // 1000)])
    frequencies = np.bincount(draws, minlength=4) / n
    np.testing.assert_allclose(frequencies, expected, atol=4 * np.sqrt(0.25 / n))  # 4 standard errors
    if top_k is not None:
        assert set(np.unique(draws)) == set(np.flatnonzero(expected))


def test_sampling_errors():
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(np.zeros((1, 3)), temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        sample_next_token(np.zeros((1, 3)), top_k=0)
    with pytest.raises(ValueError, match=r"\(batch, vocab\)"):
        sample_next_token(np.zeros(3))


def test_generate_shapes_determinism_and_greedy_consistency():
    manual_seed(0)
    model = Llama(get_preset("nano", max_seq_len=8))
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    a = generate(model, prompt, 10, temperature=1.0, top_k=20, rng=7)
    b = generate(model, prompt, 10, temperature=1.0, top_k=20, rng=7)
    assert a.shape == (2, 13) and np.array_equal(a[:, :3], prompt) and np.array_equal(a, b)
    greedy = generate(model, prompt[:1], 3, temperature=0)
    expected = prompt[:1]
    for _ in range(3):  # recompute greedily by hand
        expected = np.concatenate([expected, model(expected).data[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(greedy, expected)
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, np.zeros((1, 0), dtype=np.int64), 1)


def test_get_batch_targets_are_the_next_tokens():
    tokens = np.arange(100) * 3
    x, y = get_batch(tokens, 4, 10, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 10) and x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 3)
    with pytest.raises(ValueError, match="at least seq_len"):
        get_batch(tokens[:5], 1, 10, np.random.default_rng(0))


def test_bits_per_byte_by_hand():
    assert bits_per_byte(1.0, n_tokens=1, n_bytes=2) == pytest.approx(0.5 / math.log(2))
    assert bits_per_byte(math.log(256), n_tokens=10, n_bytes=10) == pytest.approx(8.0)  # uniform over bytes


def test_train_config_validation():
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(max_steps=10, warmup_steps=20)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        TrainConfig(lr=1e-3, min_lr_ratio=10.0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_optimizer_decays_matrices_only():
    model = Llama(get_preset("nano"))
    decayed, plain = make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_training_learns_a_deterministic_sequence():
    """A cyclic sequence is perfectly predictable from the previous token: the loss must fall far below log(V)."""
    manual_seed(0)
    vocab = 16
    tokens = np.tile(np.random.default_rng(0).permutation(vocab), 200)
    config = get_preset("nano", dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=vocab, max_seq_len=32)
    model = Llama(config)
    train_config = TrainConfig(max_steps=60, batch_size=8, seq_len=16, lr=1e-2, min_lr_ratio=0.1,
                               warmup_steps=5, eval_interval=30, eval_batches=2, log_interval=10)
    before = estimate_loss(model, tokens, train_config)
    logged = []
    history = train(model, tokens, tokens, train_config, log=logged.append)
    assert before == pytest.approx(math.log(vocab), rel=0.05)
    assert history[-1]["val_loss"] < 0.1 < before
    assert [r["step"] for r in history] == [10, 20, 30, 40, 50, 60]
    assert ["val_loss" in r for r in history] == [False, False, True, False, False, True]
    assert len(logged) == 6 and logged[-1].startswith("step    60")
    assert history[0]["lr"] == pytest.approx(_cosine(9, 60, 5), rel=1e-12)  # step 10 ran with the lr of index 9


def _cosine(step, total, warmup, max_lr=1e-2, min_lr=1e-3):
    """The warmup + cosine schedule after the warmup, written out by hand (the peak is step ``warmup - 1``)."""
    progress = (step - warmup + 1) / (total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def test_command_line_run_writes_metrics(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 200)
    out = tmp_path / "run.json"
    metrics = main(["--preset", "nano", "--text", str(text), "--vocab-size", "300", "--max-steps", "4",
                    "--batch-size", "2", "--seq-len", "16", "--warmup-steps", "1", "--eval-interval", "2",
                    "--eval-batches", "1", "--log-interval", "2", "--out", str(out)])
    assert out.exists()
    assert metrics["tokenizer_vocab_size"] <= 300 and metrics["model_config"]["vocab_size"] <= 300
    assert [r["step"] for r in metrics["history"]] == [2, 4]
    assert metrics["final_val_bits_per_byte"] > 0 and isinstance(metrics["sample"], str)
