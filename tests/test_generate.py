"""Sampling rules against hand calculations and empirical frequencies; streaming generation; `minillama generate`."""

from __future__ import annotations

import pytest
import torch

from minillama.config import LLAMA3_VOCAB_SIZE, get_preset
from minillama.generate import generate, sample_next_token, stream
from minillama.model import Llama
from minillama.weights import save_checkpoint


def frequencies(logits: torch.Tensor, draws: int = 20000, **kwargs) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    batch = logits.expand(draws, -1)
    ids = sample_next_token(batch, generator=generator, **kwargs)
    return torch.bincount(ids, minlength=logits.shape[-1]).float() / draws


PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]])


def test_greedy_is_argmax():
    logits = torch.randn(5, 100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next_token(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, top_k=1), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, top_p=1e-6), logits.argmax(-1))


def test_temperature_sampling_follows_the_softmax():
    logits = PROBS.log()
    torch.testing.assert_close(frequencies(logits), PROBS[0], atol=0.015, rtol=0)
    tempered = torch.softmax(logits / 2.0, dim=-1)[0]  # flatter: p^(1/2), renormalized
    torch.testing.assert_close(tempered, PROBS[0].sqrt() / PROBS[0].sqrt().sum())
    torch.testing.assert_close(frequencies(logits, temperature=2.0), tempered, atol=0.015, rtol=0)


def test_top_k_and_top_p_renormalize_the_kept_tokens():
    logits = PROBS.log()
    torch.testing.assert_close(frequencies(logits, top_k=2), torch.tensor([0.625, 0.375, 0, 0]), atol=0.015, rtol=0)
    # top_p=0.7: 0.5 alone is not enough, 0.5 + 0.3 is: the nucleus is the first two tokens
    torch.testing.assert_close(frequencies(logits, top_p=0.7), torch.tensor([0.625, 0.375, 0, 0]), atol=0.015, rtol=0)
    torch.testing.assert_close(frequencies(logits, top_p=0.81), torch.tensor([0.5, 0.3, 0.15, 0]) / 0.95, atol=0.015,
                               rtol=0)


def test_sampling_argument_errors():
    logits = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(logits, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(logits, top_p=0)
    with pytest.raises(ValueError, match="top_k"):
        sample_next_token(logits, top_k=0)


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return Llama(get_preset("nano")).eval()


def test_stream_yields_one_token_per_step_and_matches_generate(nano):
    prompt = [1, 2, 3]
    streamed = torch.stack(list(stream(nano, prompt, 10, temperature=0)), dim=1)
    full = generate(nano, prompt, 10, temperature=0)
    assert full.shape == (1, 13) and torch.equal(full[:, 3:], streamed)
    gen = torch.Generator().manual_seed(3)
    sampled_cache = generate(nano, prompt, 10, temperature=1.0, generator=gen)
    gen = torch.Generator().manual_seed(3)
    sampled_full = generate(nano, prompt, 10, temperature=1.0, generator=gen, use_cache=False)
    assert torch.equal(sampled_cache, sampled_full)  # same random stream, same logits -> same tokens


def test_generation_stops_at_a_stop_token(nano):
    greedy = generate(nano, [5, 6], 12, temperature=0)[0, 2:].tolist()
    stop = greedy[4]
    out = generate(nano, [5, 6], 12, temperature=0, stop_tokens=[stop])[0, 2:].tolist()
    assert out == greedy[: greedy.index(stop) + 1]


def test_batched_generation_equals_one_by_one(nano):
    prompts = torch.tensor([[1, 2, 3, 4], [9, 8, 7, 6]])
    batched = generate(nano, prompts, 8, temperature=0)
    for row in range(2):
        assert torch.equal(batched[row], generate(nano, prompts[row], 8, temperature=0)[0])


def test_generation_length_errors(nano):
    with pytest.raises(ValueError, match=r"prompt \(3\) \+ max_new_tokens \(200\) exceeds max_seq_len \(128\)"):
        generate(nano, [1, 2, 3], 200)
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(nano, [], 2)


def test_generation_leaves_the_model_trainable(nano):
    generate(nano, [1, 2], 3)
    logits = nano(torch.tensor([[1, 2, 3]]))
    assert logits.requires_grad and not torch.is_inference_mode_enabled()


# --- the command line ------------------------------------------------------------------------------------------------


def test_cli_with_our_tokenizer(tmp_path, capsys, nano):
    from minillama.cli import main
    from minillama.tokenizer.bpe import BPETokenizer

    tokenizer = BPETokenizer()  # the 256 byte tokens: nano's vocabulary
    tokenizer.save(tmp_path / "tok.model")
    save_checkpoint(nano, tmp_path / "ckpt", tokenizer_file=tmp_path / "tok.model")
    args = ["generate", str(tmp_path / "ckpt"), "--prompt", "Hi", "--max-new-tokens", "12", "--temperature", "0",
            "--device", "cpu"]
    assert main(args) == 0
    expected_ids = generate(nano, tokenizer.encode("Hi"), 12, temperature=0)[0].tolist()
    assert capsys.readouterr().out == tokenizer.decode(expected_ids) + "\n"


def test_cli_with_metas_tokenizer(tmp_path, capsys):
    from minillama.cli import main
    from minillama.tokenizer.llama3 import Llama3Tokenizer

    torch.manual_seed(0)
    model = Llama(get_preset("nano", vocab_size=LLAMA3_VOCAB_SIZE)).eval()
    save_checkpoint(model, tmp_path)
    assert main(["generate", str(tmp_path), "--prompt", "The capital of France is", "--max-new-tokens", "5",
                 "--temperature", "0", "--device", "cpu"]) == 0
    tokenizer = Llama3Tokenizer()
    ids = tokenizer.encode("The capital of France is", bos=True)
    new = generate(model, ids, 5, temperature=0, stop_tokens=tokenizer.stop_tokens)[0, len(ids):].tolist()
    new = new[: next((i for i, t in enumerate(new) if t in tokenizer.stop_tokens), len(new))]
    assert capsys.readouterr().out == "The capital of France is" + tokenizer.decode(new) + "\n"


def test_right_padding_to_a_multiple_changes_nothing(nano):
    """Tensor parallelism splits positions evenly, so it samples from sequences padded on the right: attention is
    causal, so the logits of the last real position, and the tokens sampled from them, do not change."""
    prompt = [1, 2, 3]
    cached = generate(nano, prompt, 10, temperature=1.0, generator=torch.Generator().manual_seed(3))
    padded = generate(nano, prompt, 10, temperature=1.0, generator=torch.Generator().manual_seed(3),
                      use_cache=False, pad_to_multiple=4)
    assert torch.equal(cached, padded)
    with pytest.raises(ValueError, match="pad_to_multiple"):
        generate(nano, prompt, 2, pad_to_multiple=4)  # the cache holds positions: no padding there
    with pytest.raises(ValueError, match="pad_to_multiple"):
        generate(nano, prompt, 2, use_cache=False, pad_to_multiple=0)


def test_cache_refuses_a_slice_of_the_heads(nano):
    cache = nano.make_cache(1)
    config = nano.config
    keys = torch.zeros(1, config.n_kv_heads // 2, 1, config.head_dim)  # what one of 2 tensor-parallel ranks holds
    with pytest.raises(ValueError, match="use_cache=False"):
        cache.update(0, 0, keys, keys)
