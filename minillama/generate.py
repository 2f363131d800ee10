"""Sampling text from a Llama: next-token sampling rules, KV-cache decoding, and the ``minillama generate`` command.

Generation runs the prompt through the model once (the *prefill*), storing every layer's keys and values in a
:class:`~minillama.model.KVCache`, then feeds one sampled token at a time (the *decode* steps), each of which reads
the cache instead of recomputing the whole prefix. ``torch.inference_mode`` is switched on here, around generation,
never inside the model, which also trains.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import pickle
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from minillama.device import DTYPES, resolve_device, resolve_dtype
from minillama.errors import UserError, as_user_error
from minillama.model import Llama


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of ``logits`` (B, vocab): greedy, or sampled with temperature, top-k and top-p.

    - ``temperature == 0``: greedy (argmax). Otherwise the logits are divided by ``temperature`` (< 1 sharpens,
      > 1 flattens the distribution).
    - ``top_k``: keep the ``k`` most likely tokens.
    - ``top_p``: nucleus sampling (Holtzman et al. 2020): keep the smallest set of most likely tokens whose
      probabilities add up to at least ``top_p``. With probabilities ``[0.5, 0.3, 0.2]`` and ``top_p=0.7`` the
      first two are kept.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the more likely tokens
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))  # the first is always kept
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.inference_mode()
def stream(model: Llama, prompt: torch.Tensor | Sequence[int], max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, stop_tokens: Sequence[int] = (),
           generator: torch.Generator | None = None, use_cache: bool = True, pad_to_multiple: int = 1
           ) -> Iterator[torch.Tensor]:
    """Yield the next token of every sequence, (B,), one step at a time, as soon as it is sampled.

    ``prompt`` is a list of ids or a (B, T) tensor of equally long prompts. Stops after ``max_new_tokens`` or when
    every sequence has produced one of ``stop_tokens`` (a finished sequence keeps repeating its stop token).
    Without ``use_cache`` each step recomputes the whole sequence: slower, and the reference the cache must match.
    ``pad_to_multiple`` (without the cache) pads each step's sequence on the right to a multiple of it, for a model
    whose ranks split the positions evenly (tensor parallelism's sequence parallelism). The padding changes nothing:
    attention is causal, so the logits of position ``t`` never see the positions after it.
    """
    device = model.tok_embeddings.weight.device
    tokens = torch.as_tensor(prompt, dtype=torch.long, device=device)
    tokens = tokens[None] if tokens.dim() == 1 else tokens  # (T,) -> (1, T)
    B, T = tokens.shape  # batch, prompt length
    if T == 0:
        raise ValueError("the prompt is empty: give at least one token (e.g. the tokenizer's begin-of-text id)")
    if T + max_new_tokens > model.config.max_seq_len:
        raise ValueError(f"prompt ({T}) + max_new_tokens ({max_new_tokens}) exceeds max_seq_len "
                         f"({model.config.max_seq_len})")
    if pad_to_multiple < 1 or (pad_to_multiple > 1 and use_cache):
        raise ValueError(f"pad_to_multiple must be >= 1, and 1 with the KV cache; got {pad_to_multiple} "
                         f"(use_cache={use_cache})")
    cache = model.make_cache(B, T + max_new_tokens) if use_cache else None
    stop = torch.tensor(list(stop_tokens), dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    last_token = torch.zeros(B, dtype=torch.long, device=device)
    position = 0
    for _ in range(max_new_tokens):
        if cache is not None:
            logits = model(tokens[:, position:], start_pos=position, cache=cache, last_only=True)
            position = tokens.shape[1]
        elif pad_to_multiple > 1:
            length = tokens.shape[1]
            padded = F.pad(tokens, (0, -length % pad_to_multiple))  # (B, t) -> (B, multiple of pad_to_multiple)
            logits = model(padded)[:, length - 1:length]  # (B, 1, vocab): the last real position
        else:
            logits = model(tokens, last_only=True)
        next_token = sample_next_token(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
        next_token = torch.where(finished, last_token, next_token)
        finished |= torch.isin(next_token, stop)
        last_token = next_token
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (B, T) -> (B, T + 1)
        yield next_token
        if bool(finished.all()):
            return


def generate(model: Llama, prompt: torch.Tensor | Sequence[int], max_new_tokens: int, **kwargs) -> torch.Tensor:
    """The prompt followed by the generated tokens, (B, T + new); ``kwargs`` as for :func:`stream`."""
    tokens = torch.as_tensor(prompt, dtype=torch.long, device=model.tok_embeddings.weight.device)
    tokens = tokens[None] if tokens.dim() == 1 else tokens
    new = list(stream(model, tokens, max_new_tokens, **kwargs))
    return torch.cat([tokens, torch.stack(new, dim=1)], dim=1) if new else tokens


def sample_texts(model: Llama, tokenizer, prompt: str, num_samples: int, max_new_tokens: int, *, seed: int,
                 stop_at_end: bool = True, **kwargs) -> list[str]:
    """``num_samples`` continuations of ``prompt`` as text, cut at the end-of-text token, from a generator seeded
    with ``seed`` (the caller's random state is untouched); ``kwargs`` as for :func:`stream`.

    ``stop_at_end=False`` always runs ``max_new_tokens`` steps (every rank of a sharded model must run the same
    number of forwards). Runs eagerly: through compiled blocks every prompt length and decode position would be
    one more graph to compile, for a few tokens.
    """
    end = "<|end_of_text|>"
    ids = tokenizer.encode(prompt, disallowed_special=()) or [0]
    stops = [tokenizer.special_tokens[end]] if end in tokenizer.special_tokens else []
    generator = torch.Generator(model.tok_embeddings.weight.device).manual_seed(seed)
    max_new_tokens = min(max_new_tokens, model.config.max_seq_len - len(ids))
    eager = (torch.compiler.set_stance("force_eager") if hasattr(torch.compiler, "set_stance")
             else contextlib.nullcontext())
    was_training = model.training
    model.eval()
    texts = []
    for _ in range(num_samples):
        with eager:
            out = generate(model, ids, max_new_tokens, stop_tokens=stops if stop_at_end else [],
                           generator=generator, **kwargs)[0].tolist()
        cut = next((k for k, i in enumerate(out) if i in stops), len(out))
        texts.append(tokenizer.decode(out[:cut]))
    model.train(was_training)
    return texts


# --- the `minillama generate` command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint folder: ours (config.json + model.safetensors), Meta's "
                                           "(params.json + consolidated.*.pth), Hugging Face's, or a run folder of "
                                           "`minillama train` (its latest checkpoint)")
    parser.add_argument("--best", action="store_true", help="from a run folder, take the checkpoint with the best "
                                                            "validation loss instead of the latest")
    parser.add_argument("--prompt", default="", help="text to continue (default: start from begin-of-text)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 for greedy decoding (default: 0.8)")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling threshold (default: 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling (default: 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (the best available)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="weights and cache dtype (auto: bfloat16 on a GPU, else the checkpoint's own)")
    parser.add_argument("--tokenizer", default="auto",
                        help="'llama3' (Meta's tokenizer), a tokenizer.model path, or auto: the checkpoint's "
                             "tokenizer.model (or tokenizer.json), or Meta's for a 128,256-token vocabulary")
    parser.add_argument("--quantize", default=None, metavar="SCHEME",
                        help="int8, int4 (int4-g32/-g64/-g128, -asym for a zero point) or fp8 (chapter 13)")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse impossible sampling settings before anything is loaded."""
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UserError(f"--temperature must be a number >= 0 (0 = greedy), got {args.temperature}")
    if not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be between 0 and 2**63 - 1, got {args.seed}")


def checkpoint_folder(path: str | Path, best: bool = False) -> Path:
    """The model folder to load: ``path`` itself, or from a run folder (``RUN`` or ``RUN/checkpoints``) its latest
    checkpoint, or with ``best`` the one with the lowest validation loss among those evaluated at their step."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is a file, not a folder")
    runs = [folder for folder in (path / "checkpoints", path) if folder.is_dir()]
    steps = [p for folder in runs for p in folder.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    if not steps:
        if best:
            raise UserError(f"--best needs a run folder with checkpoints/step_N inside; {path} has none")
        return path
    steps.sort(key=lambda p: int(p.name[5:]))
    if not best:
        return steps[-1]
    scored = [(meta["val_loss"], p) for p in steps
              if isinstance((meta := _read_json(p / "meta.json")).get("val_loss"), (int, float))
              and math.isfinite(meta["val_loss"])]
    if not scored:
        raise UserError(f"no checkpoint of {path} was evaluated at its own step: drop --best to take the latest")
    return min(scored, key=lambda item: item[0])[1]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_tokenizer(spec: str, checkpoint: Path, vocab_size: int):
    """The tokenizer for a checkpoint: Meta's Llama 3 tokenizer, one of ours (a tiktoken rank file), or the
    ``tokenizer.json`` that :func:`minillama.weights.save_hf` writes."""
    from minillama.config import LLAMA3_VOCAB_SIZE

    own = checkpoint / "tokenizer.model"
    if spec == "llama3" or (spec == "auto" and vocab_size == LLAMA3_VOCAB_SIZE):
        from minillama.tokenizer.llama3 import Llama3Tokenizer

        return Llama3Tokenizer(own if own.exists() else None)
    if spec == "auto" and not own.exists() and (checkpoint / "tokenizer.json").is_file():
        from minillama.tokenizer.huggingface import tokenizer_from_hf_json

        return tokenizer_from_hf_json(checkpoint / "tokenizer.json")
    path = own if spec == "auto" else Path(spec)
    if not path.is_file():
        raise UserError(f"no tokenizer at {path}: pass --tokenizer PATH (a tokenizer.model) or 'llama3'")
    from minillama.tokenizer.bpe import BPETokenizer

    return BPETokenizer.load(path)


def _prompt_and_stops(tokenizer, prompt: str) -> tuple[list[int], list[int]]:
    """Prompt ids and stop ids: Meta's begin-of-text / end tokens, or for our tokenizers the end-of-text token,
    which also starts every document in our token shards (so an empty prompt starts a new document)."""
    if hasattr(tokenizer, "bos_id"):  # Meta's Llama 3 tokenizer
        return tokenizer.encode(prompt, bos=True), list(tokenizer.stop_tokens)
    special = getattr(tokenizer, "special_tokens", {})
    starts = [special[s] for s in ("<|begin_of_text|>", "<|end_of_text|>", "<|endoftext|>") if s in special]
    stops = [special[s] for s in ("<|end_of_text|>", "<|endoftext|>", "<|eot_id|>") if s in special]
    ids = starts[:1] + tokenizer.encode(prompt, disallowed_special=())
    if not ids:
        raise UserError("empty prompt and the tokenizer has no start-of-text token: give a --prompt")
    return ids, stops


def run(args: argparse.Namespace) -> int:
    from minillama.weights import load_checkpoint

    check_arguments(args)
    device = resolve_device(args.device)
    dtype = torch.float32 if args.dtype == "float32" else resolve_dtype(args.dtype, device)  # None: as saved
    folder = checkpoint_folder(args.checkpoint, best=args.best)
    with as_user_error(ValueError, OSError, RuntimeError, EOFError, pickle.UnpicklingError,
                       prefix=f"cannot load {folder}: "):
        model = load_checkpoint(folder, device=device, dtype=dtype)
        tokenizer = load_tokenizer(args.tokenizer, folder, model.config.vocab_size)
    if args.quantize:  # chapter 13's stage, imported only when asked for
        from minillama.quantize import quantize_model

        model = quantize_model(model, args.quantize)
    if tokenizer.n_vocab > model.config.vocab_size:
        raise UserError(f"the tokenizer has {tokenizer.n_vocab:,} ids, more than the model's vocabulary of "
                        f"{model.config.vocab_size:,}: it belongs to another model (pass the right --tokenizer)")
    prompt_ids, stop_tokens = _prompt_and_stops(tokenizer, args.prompt)
    if len(prompt_ids) >= model.config.max_seq_len:
        raise UserError(f"the prompt is {len(prompt_ids)} tokens; the model reads at most {model.config.max_seq_len}")
    max_new = min(args.max_new_tokens, model.config.max_seq_len - len(prompt_ids))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    generated: list[int] = []
    printed = ""
    for token in stream(model, prompt_ids, max_new, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, stop_tokens=stop_tokens, generator=generator):
        if int(token) in stop_tokens:
            break
        generated.append(int(token))
        text = tokenizer.decode(generated)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the next token
            continue
        out.write(text[len(printed):])
        out.flush()
        printed = text
    out.write(tokenizer.decode(generated)[len(printed):] + "\n")  # whatever an unfinished character left
    return 0
