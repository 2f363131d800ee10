"""Bits per byte: the same number as the trainer's evaluation, the byte table of any tokenizer, a hand calculation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _train_helpers import nano_config, one_thread, small_corpus  # noqa: F401 (one_thread is a fixture)

from minillama.config import get_preset
from minillama.evaluate.bpb import bits_per_byte, text_bits_per_byte, token_byte_lengths
from minillama.model import Llama
from minillama.tokenizer.llama3 import Llama3Tokenizer
from minillama.train.trainer import Trainer


def test_matches_the_trainers_evaluation(tmp_path, one_thread):  # noqa: F811
    trainer = Trainer(nano_config(tmp_path / "run", small_corpus(tmp_path), max_steps=5))
    trainer.fit()
    theirs = trainer.evaluate(max_batches=0)
    ours = bits_per_byte(trainer.model, trainer.data.val, trainer.data.token_bytes(), trainer.config.seq_len,
                         trainer.config.batch_size)
    assert ours["bpb"] == pytest.approx(theirs["val_bpb"], rel=1e-6)
    assert ours["loss"] == pytest.approx(theirs["val_loss"], rel=1e-6)
    assert ours["tokens"] == theirs["val_tokens"]
    np.testing.assert_array_equal(token_byte_lengths(trainer.data.tokenizer), trainer.data.token_bytes())


def test_meta_tokenizer_byte_lengths():
    tokenizer = Llama3Tokenizer()
    lengths = token_byte_lengths(tokenizer)
    ids = tokenizer.encode("Bits per byte, not per token: ünïcode too.")
    assert lengths[ids].sum() == len("Bits per byte, not per token: ünïcode too.".encode())
    assert lengths[tokenizer.bos_id] == 0


class Uniform(torch.nn.Module):
    """A model that knows nothing: every next token has probability 1 / vocab."""

    def __init__(self, vocab: int):
        super().__init__()
        self.config = get_preset("nano", vocab_size=vocab)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, self.config.vocab_size) + 0 * self.anchor


def test_uniform_model_by_hand():
    vocab = 256
    byte_lengths = np.ones(vocab, dtype=np.int64)  # a byte-level vocabulary: every token is one byte
    result = bits_per_byte(Uniform(vocab), np.arange(65) % vocab, byte_lengths, seq_len=16)
    assert result["loss"] == pytest.approx(math.log(vocab))
    assert result["bpb"] == pytest.approx(8.0)  # log2(256) bits per one-byte token
    assert result["tokens"] == 64


def test_too_little_text_is_a_clear_error():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="too few"):
        bits_per_byte(Llama(get_preset("nano")), np.arange(5), np.ones(256, dtype=np.int64), seq_len=16)


def test_text_bits_per_byte_uses_the_models_own_tokens():
    from minillama.tokenizer.bpe import BPETokenizer

    text = "To be, or not to be, that is the question. " * 20
    tokenizer = BPETokenizer().train(text, vocab_size=280)
    torch.manual_seed(0)
    model = Llama(get_preset("nano", vocab_size=280))
    result = text_bits_per_byte(model, tokenizer, text, seq_len=32)
    assert result["bytes"] <= len(text.encode())
    assert result["bpb"] == pytest.approx(result["loss"] * result["tokens"] / result["bytes"] / math.log(2))
