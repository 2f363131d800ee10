"""Loaders for public multiple-choice benchmarks, in their published JSONL and parquet formats.

Each loader turns one record into an :class:`~minillama.evaluate.tasks.Item` with the prompt lm-evaluation-harness
uses for that task (``hellaswag``, ``arc_easy``/``arc_challenge``, ``piqa``), so numbers compare with published ones.
Files are found as corpora are (:mod:`minillama.data.paths`): the offline mirror (``MINILLAMA_DATA_MIRROR``), then
the cache, then a download whose SHA-256 is checked against the pin in :data:`SOURCES`. A source without a pin is
pinned on first download: its hash is written beside the file and every later use checks it.
"""

from __future__ import annotations

import json
import re
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from minillama.data.download import ChecksumError, download, sha256_of
from minillama.data.paths import cache_dir, mirror_dir, offline
from minillama.errors import UserError
from minillama.evaluate.tasks import Item, Task, register


def records(path: str | Path) -> Iterator[dict]:
    """The records of a ``.jsonl`` or ``.parquet`` file, as dicts."""
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"reading {path.name} needs pyarrow: pip install 'minillama[data]'") from None
        yield from pq.read_table(path).to_pylist()
        return
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}, line {number}: not JSON ({error})") from None


def _hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow artefacts out, as the harness does: ``" [title]"`` ends a sentence, other ``[tags]`` go."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_item(record: dict) -> Item:
    """``{"ind", "activity_label", "ctx_a", "ctx_b", "endings", "label"}`` (rowanz/hellaswag; HF Rowan/hellaswag)."""
    context = record["activity_label"] + ": " + record["ctx_a"] + " " + record["ctx_b"].capitalize()
    return Item(str(record.get("ind", record.get("id", ""))), _hellaswag_clean(context),
                tuple(_hellaswag_clean(ending) for ending in record["endings"]), int(record["label"]))


def arc_item(record: dict) -> Item:
    """AI2 ARC: the allenai JSONL (``question.stem``, ``question.choices``) or HF's parquet (``question``, ``choices``).

    ``answerKey`` is a letter or, for a few questions, a digit; it is looked up among the choices' labels.
    """
    question = record["question"]
    if isinstance(question, dict):
        stem, labels = question["stem"], [c["label"] for c in question["choices"]]
        texts = [c["text"] for c in question["choices"]]
    else:
        stem, labels, texts = question, list(record["choices"]["label"]), list(record["choices"]["text"])
    return Item(str(record["id"]), f"Question: {stem}\nAnswer:", tuple(texts), labels.index(record["answerKey"]))


def piqa_item(record: dict) -> Item:
    """PIQA: ``{"goal", "sol1", "sol2", "label"}`` (the label inline, as in the HF parquet)."""
    return Item(str(record.get("id", record["goal"][:40])), f"Question: {record['goal']}\nAnswer:",
                (record["sol1"], record["sol2"]), int(record["label"]))


@dataclass(frozen=True)
class Source:
    """A public benchmark file: where it is published, its SHA-256 (``None``: pinned on first download), its format."""

    filename: str
    url: str
    sha256: str | None
    to_item: Callable[[dict], Item]


SOURCES: dict[str, Source] = {
    "hellaswag": Source("hellaswag_val.jsonl",
                        "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl",
                        None, hellaswag_item),
    "arc-easy": Source("ARC-Easy-Test.parquet",
                       "https://huggingface.co/datasets/allenai/ai2_arc/resolve/main/ARC-Easy/test-00000-of-00001.parquet",
                       None, arc_item),
    "arc-challenge": Source("ARC-Challenge-Test.parquet",
                            "https://huggingface.co/datasets/allenai/ai2_arc/resolve/main/ARC-Challenge/"
                            "test-00000-of-00001.parquet", None, arc_item),
    "piqa": Source("piqa_validation.parquet",
                   "https://huggingface.co/datasets/ybisk/piqa/resolve/refs%2Fconvert%2Fparquet/plain_text/"
                   "validation/0000.parquet", None, piqa_item),
}


def check_pin(path: Path, sha256: str | None) -> None:
    """Check ``path`` against ``sha256``, or against the hash recorded beside it at first use (written if none)."""
    pin_file = path.with_name(path.name + ".sha256")
    expected = sha256 or (pin_file.read_text().strip() if pin_file.is_file() else None)
    actual = sha256_of(path)
    if expected is None:
        pin_file.write_text(actual + "\n")
    elif actual != expected:
        raise ChecksumError(f"{path} has SHA-256 {actual}, expected {expected}: the file changed since it was "
                            f"pinned; delete it to download it again")


def source_path(source: Source) -> Path:
    """The local file of a public source: mirror, then cache, then a checked download into the cache."""
    mirror = mirror_dir()
    if mirror is not None and (mirror / source.filename).is_file():
        path = mirror / source.filename
        if source.sha256:
            check_pin(path, source.sha256)
        return path
    path = cache_dir() / "eval" / source.filename
    if not path.is_file():
        if offline():
            raise UserError(f"{source.filename} is not in the mirror or the cache and MINILLAMA_OFFLINE is set: put "
                            f"it in MINILLAMA_DATA_MIRROR (source: {source.url})")
        try:
            download(source.url, path, sha256=source.sha256)
        except urllib.error.URLError as error:
            raise UserError(f"cannot download {source.url} ({error.reason}); put {source.filename} in a folder and "
                            f"set MINILLAMA_DATA_MIRROR to it") from None
    check_pin(path, source.sha256)
    return path


def load_public(name: str, path: str | Path | None = None, limit: int | None = None) -> Task:
    """A public task from ``path`` or its pinned source; few-shot examples are drawn from the items themselves."""
    source = SOURCES[name]
    items = [source.to_item(record) for record in records(path or source_path(source))]
    items = items[:limit] if limit else items
    return Task(name, items, target_delimiter=" ")


for _name in SOURCES:
    register(_name)(lambda name=_name: load_public(name))
