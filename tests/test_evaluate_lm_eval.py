"""``minillama eval`` against EleutherAI's lm-evaluation-harness (``lm-eval``), an independent implementation.

A ``nano`` model trained for a few steps is exported as a Hugging Face folder (``save_hf``, with ``tokenizer.json``);
the harness's HF backend (``transformers.LlamaForCausalLM`` and the ``tokenizers`` library: no minillama code)
scores a local task YAML over the same JSONL items, offline. Per-item log-likelihoods (conditional and
unconditional) agree to 1e-4 and the picks of ``acc``, ``acc_norm`` and ``acc_mutual_info`` are identical.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from _train_helpers import nano_config, one_thread, small_corpus  # noqa: F401 (one_thread is a fixture)

from minillama.evaluate.generated import arithmetic, next_line_items
from minillama.evaluate.run import evaluate_task
from minillama.evaluate.tasks import Item, Task, write_jsonl
from minillama.tokenizer.bpe import BPETokenizer
from minillama.train.trainer import Trainer
from minillama.weights import load_checkpoint, save_hf

lm_eval = pytest.importorskip("lm_eval", reason="pip install lm-eval (the test extra)")

pytestmark = pytest.mark.slow


def agreement_items() -> list[Item]:
    """Generated items, plus the cases where tokenization conventions bite: a context ending in spaces, a newline,
    non-ASCII answers (characters != bytes), answers of very different lengths (acc vs acc_norm)."""
    from minillama.data.corpora import pydocs_text

    items = arithmetic(n_items=6, seed=3).items + next_line_items(pydocs_text()[:60_000], 6, seed=5, prefix="doc")
    items += [
        Item("space", "The capital of France is ", ("Paris", "a city in Europe with many museums"), 0),
        Item("newline", "def f(x):\n", ("    return x", "    pass  # nothing to do here at all", "x"), 0),
        Item("unicode", "Café au lait costs", (" 3 €", " three euros", " £2"), 0),
        Item("lengths", "Question: Which is longer?\nAnswer:", (" no", " the one with many more words in it"), 1),
    ]
    return items


def test_per_item_loglikelihoods_and_picks_match_lm_eval(tmp_path, one_thread, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no cached state from elsewhere
    trainer = Trainer(nano_config(tmp_path / "run", small_corpus(tmp_path), max_steps=30))
    trainer.fit()
    checkpoint = trainer.checkpointer.latest()
    model = load_checkpoint(checkpoint)
    tokenizer = BPETokenizer.load(checkpoint / "tokenizer.model")
    save_hf(model, tmp_path / "hf", tokenizer=checkpoint / "tokenizer.model")

    items = agreement_items()
    data = write_jsonl(items, tmp_path / "items.jsonl")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "minillama_mc.yaml").write_text(textwrap.dedent(f"""\
        task: minillama_mc
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{{{context}}}}"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: gold
        target_delimiter: ""
        metric_list:
          - metric: acc
          - metric: acc_norm
          - metric: acc_mutual_info
        """))
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(model="hf", model_args={"pretrained": str(tmp_path / "hf"), "dtype": "float32",
                                                      "device": "cpu"},
                              tasks=["minillama_mc"], task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
                              num_fewshot=0, batch_size=1, log_samples=True, random_seed=0, numpy_random_seed=0,
                              torch_random_seed=0, fewshot_random_seed=0)
    theirs = {str(sample["doc"]["id"]): sample for sample in results["samples"]["minillama_mc"]}

    torch.set_num_threads(1)
    ours, summary = evaluate_task(model, tokenizer, Task("minillama_mc", items, target_delimiter=""))
    assert len(theirs) == len(ours) == len(items)
    for record, item in zip(ours, items, strict=True):
        sample = theirs[item.id]
        lls = [float(resp[0][0]) for resp in sample["resps"]]
        k = len(item.choices)
        conditional, unconditional = lls[:k], lls[k:]
        torch.testing.assert_close(torch.tensor(record["logprobs"]), torch.tensor(conditional), atol=1e-4, rtol=0,
                                   msg=lambda m, item=item: f"item {item.id}: {m}")
        torch.testing.assert_close(torch.tensor(record["unconditional_logprobs"]), torch.tensor(unconditional),
                                   atol=1e-4, rtol=0, msg=lambda m, item=item: f"item {item.id} (unconditional): {m}")
        for metric in ("acc", "acc_norm", "acc_mutual_info"):
            assert record[metric] == sample[metric], f"item {item.id}: {metric} {record[metric]} vs {sample[metric]}"
    for metric in ("acc", "acc_norm", "acc_mutual_info"):
        assert summary[metric]["value"] == pytest.approx(results["results"]["minillama_mc"][f"{metric},none"])
