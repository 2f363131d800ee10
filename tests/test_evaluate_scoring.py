"""Multiple-choice scoring: the shared-KV-cache batch against one plain forward per choice, the harness's
tokenization conventions by hand, and each metric's pick by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minillama.config import get_preset
from minillama.evaluate.scoring import encode_pair, predictions, prefix_token, score_continuations
from minillama.model import Llama
from minillama.tokenizer.bpe import BPETokenizer
from minillama.tokenizer.llama3 import Llama3Tokenizer


@pytest.fixture(scope="module")
def model() -> Llama:
    torch.manual_seed(0)
    return Llama(get_preset("nano", max_seq_len=32)).eval()


@torch.no_grad()
def plain_logprob(model: Llama, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context) from one forward over the whole sequence, no cache, no batching."""
    ids = (context + continuation)[-(model.config.max_seq_len + 1):]
    logits = model(torch.tensor([ids[:-1]]))[0]  # (T, vocab)
    logprobs = F.log_softmax(logits.double(), dim=-1)
    n = len(continuation)
    return float(logprobs[-n:].gather(-1, torch.tensor(ids[-n:])[:, None]).sum())


def test_shared_cache_batch_equals_one_forward_per_choice(model):
    context = [5, 17, 42, 9, 100]
    continuations = [[3], [7, 8, 9, 10], [200, 1], [4, 4, 4, 4, 4, 4]]
    scores = score_continuations(model, context, continuations)
    for score, continuation in zip(scores, continuations, strict=True):
        assert score.n_tokens == len(continuation)
        assert score.logprob == pytest.approx(plain_logprob(model, context, continuation), abs=1e-5)


def test_too_long_pairs_are_cut_from_the_left_one_by_one(model):
    context = list(range(1, 31))  # 30 tokens: with 4-token answers the pair exceeds max_seq_len + 1 = 33
    continuations = [[3, 4, 5, 6], [7]]
    scores = score_continuations(model, context, continuations)
    for score, continuation in zip(scores, continuations, strict=True):
        assert score.logprob == pytest.approx(plain_logprob(model, context, continuation), abs=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        score_continuations(model, [1], [list(range(40))])


def test_greedy_flag_is_true_only_for_the_argmax_continuation(model):
    context = [5, 6, 7]
    logits = model(torch.tensor([context]))[0, -1]
    best, worst = int(logits.argmax()), int(logits.argmin())
    scores = score_continuations(model, context, [[best], [worst]])
    assert [s.is_greedy for s in scores] == [True, False]


def test_trailing_space_moves_to_the_answer():
    tokenizer = BPETokenizer().train("the cat sat on the mat. " * 50, vocab_size=300,
                                     special_tokens=("<|end_of_text|>",))
    assert encode_pair(tokenizer, "the cat sat on", " the mat") == encode_pair(tokenizer, "the cat sat on ", "the mat")
    context, answer = encode_pair(tokenizer, "the cat sat on", " the mat")
    assert context == tokenizer.encode("the cat sat on")
    assert tokenizer.decode(answer) == " the mat"
    # an empty context is the end-of-text token alone (this tokenizer has no begin-of-text)
    assert encode_pair(tokenizer, "", " the mat") == ([tokenizer.special_tokens["<|end_of_text|>"]],
                                                      tokenizer.encode(" the mat"))


def test_meta_tokenizer_starts_with_begin_of_text():
    tokenizer = Llama3Tokenizer()
    context, answer = encode_pair(tokenizer, "Question: 2+2?\nAnswer:", " 4")
    assert context == tokenizer.encode("Question: 2+2?\nAnswer:", bos=True)
    assert tokenizer.decode(answer) == " 4"
    assert prefix_token(tokenizer) == tokenizer.bos_id


def test_predictions_by_hand():
    # acc: -4 > -6 picks "no"; acc_norm: -6/13 = -0.46 > -4/2 = -2 picks the long answer
    assert predictions([-6.0, -4.0], ["a long answer", "no"]) == {"acc": 1, "acc_norm": 0, "acc_bytes": 0}
    # characters vs bytes: "€" is 1 character and 3 bytes; -3/1 < -2.5/1 but -3/3 = -1 > -2.5/1 per byte
    picked = predictions([-3.0, -2.5], ["€", "a"])
    assert (picked["acc_norm"], picked["acc_bytes"]) == (1, 0)
    # mutual information: subtract the unconditional log-probability
    assert predictions([-5.0, -4.0], ["x", "y"], unconditional=[-9.0, -4.5])["acc_mutual_info"] == 0
    assert predictions([-1.0, -1.0], ["x", "y"])["acc"] == 0  # ties go to the first answer, as np.argmax
