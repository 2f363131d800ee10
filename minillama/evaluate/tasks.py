"""Multiple-choice tasks: the item format, JSONL files, and k-shot prompts drawn with a fixed seed.

An item is a context, its candidate continuations and the index of the right one; every task, public or generated,
becomes a list of items in one JSONL format (one object per line: ``id``, ``context``, ``choices``, ``gold``), which
is also what the lm-evaluation-harness agreement test reads. A task adds how items join into a prompt: the
harness's ``target_delimiter`` between a context and its answer, and ``fewshot_delimiter`` between solved examples.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minillama.atomic import atomic_write
from minillama.errors import UserError


@dataclass(frozen=True)
class Item:
    """One question: ``choices[gold]`` is the continuation of ``context`` that counts as right."""

    id: str
    context: str
    choices: tuple[str, ...]
    gold: int

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"item {self.id}: a multiple-choice item needs 2 choices or more, got {len(self.choices)}")
        if not 0 <= self.gold < len(self.choices):
            raise ValueError(f"item {self.id}: gold index {self.gold} is not one of the {len(self.choices)} choices")
        if any(not choice for choice in self.choices):
            raise ValueError(f"item {self.id}: an empty choice has no tokens to score")


@dataclass
class Task:
    """A named list of items, the items few-shot examples are drawn from, and how a prompt joins them."""

    name: str
    items: list[Item]
    fewshot_items: list[Item] = field(default_factory=list)
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    description: str = ""


def read_jsonl(path: str | Path) -> list[Item]:
    """Items from a JSONL file of ``{"id", "context", "choices", "gold"}`` objects, with the line of any bad one."""
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append(Item(str(record["id"]), record["context"], tuple(record["choices"]), int(record["gold"])))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise UserError(f"{path}, line {number}: not a multiple-choice item ({error}); expected a JSON object "
                            f"with id, context, choices (a list of strings) and gold (an index)") from None
    return items


def write_jsonl(items: Sequence[Item], path: str | Path) -> Path:
    """Write items one per line (UTF-8, keys in a fixed order) so files diff and hash reproducibly."""
    lines = [json.dumps({**asdict(item), "choices": list(item.choices)}, ensure_ascii=False) for item in items]
    return atomic_write(path, "".join(line + "\n" for line in lines))


def fewshot_examples(task: Task, item: Item, shots: int, seed: int) -> list[Item]:
    """``shots`` solved examples for ``item``, drawn without replacement by ``random.Random(seed)``, never the item
    itself. The same (task, item, shots, seed) always gives the same examples; another seed, another draw."""
    if shots == 0:
        return []
    pool = [example for example in (task.fewshot_items or task.items) if example.id != item.id]
    if shots > len(pool):
        raise UserError(f"task {task.name} has {len(pool)} items to draw few-shot examples from; --shots {shots} "
                        f"asks for more")
    rng = random.Random(f"{seed}/{item.id}")  # a draw per item, independent of the order items are scored in
    return rng.sample(pool, shots)


def fewshot_context(task: Task, item: Item, shots: int = 0, seed: int = 1234) -> str:
    """The prompt for ``item``: description, ``shots`` solved examples, then the item's own context.

    Example (``target_delimiter=" "``, ``fewshot_delimiter="\\n\\n"``, one shot):
    ``"Q: 1+1?\\nA: 2\\n\\nQ: 2+3?\\nA:"``.
    """
    solved = [example.context + task.target_delimiter + example.choices[example.gold]
              for example in fewshot_examples(task, item, shots, seed)]
    return task.description + "".join(text + task.fewshot_delimiter for text in solved) + item.context


TASKS: dict[str, Callable[[], Task]] = {}


def register(name: str) -> Callable[[Callable[[], Task]], Callable[[], Task]]:
    """Add a task factory to :data:`TASKS` (called by :mod:`.generated` and :mod:`.public`)."""

    def add(factory: Callable[[], Task]) -> Callable[[], Task]:
        TASKS[name] = factory
        return factory

    return add


def get_task(name: str) -> Task:
    """A task by name, or a JSONL file of items; an unknown name lists the known ones."""
    from minillama.evaluate import generated, public  # noqa: F401  (they register their tasks)

    if name in TASKS:
        return TASKS[name]()
    path = Path(name)
    if path.suffix == ".jsonl" and path.is_file():
        return Task(path.stem, read_jsonl(path))
    raise UserError(f"unknown task {name!r}: known tasks are {', '.join(sorted(TASKS))}, or give a .jsonl file of "
                    f"items (id, context, choices, gold)")
