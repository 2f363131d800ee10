"""Tasks generated offline from the project's own corpora, deterministic by seed, so evaluation runs anywhere.

- ``shakespeare-next-line``: a passage of a speech from tinyshakespeare and four candidate next lines, the true one
  and three distractors drawn from elsewhere in the play. The items come from the last tenth of the text, the part
  ``minillama train`` holds out for validation; few-shot examples come from the first nine tenths.
- ``arithmetic``: ``Question: What is 23 plus 58?\\nAnswer:`` with four numbers to choose from. A model trained on
  Shakespeare alone sits at chance here, which is the point of a control task.
"""

from __future__ import annotations

import random

from minillama.evaluate.tasks import Item, Task, register

HELD_OUT_FRACTION = 0.1  # the tail of the corpus that the trainer's validation split holds out (val_fraction)


def speeches(text: str) -> list[list[str]]:
    """The speeches of a play: blocks separated by a blank line, each ``[speaker + ":", line, line, ...]``."""
    blocks = [block.strip("\n").split("\n") for block in text.split("\n\n")]
    return [lines for lines in blocks if len(lines) >= 2 and lines[0].endswith(":")]


def next_line_items(text: str, n_items: int, seed: int, prefix: str, n_choices: int = 4,
                    context_lines: int = 2) -> list[Item]:
    """Up to ``n_items`` items: a speaker and ``context_lines`` lines of a speech, then which line follows.

    Distractors are lines of other speeches with at least 3 words, never equal to the true line; the position of
    the true line among the choices is drawn too, so a model that prefers "the first answer" scores chance.
    """
    rng = random.Random(seed)
    play = speeches(text)
    all_lines = sorted({line for speech in play for line in speech[1:] if len(line.split()) >= 3})
    candidates = [speech for speech in play if len(speech) >= context_lines + 2]
    rng.shuffle(candidates)
    items = []
    for speech in candidates[:n_items]:
        start = rng.randrange(1, len(speech) - context_lines)
        passage, truth = speech[start : start + context_lines], speech[start + context_lines]
        if len(truth.split()) < 3:
            continue
        distractors = rng.sample([line for line in all_lines if line != truth], n_choices - 1)
        gold = rng.randrange(n_choices)
        choices = distractors[:gold] + [truth] + distractors[gold:]
        context = speech[0] + "\n" + "\n".join(passage) + "\n"
        items.append(Item(f"{prefix}-{len(items)}", context, tuple(choices), gold))
    return items


def shakespeare_next_line(n_items: int = 200, seed: int = 0, text: str | None = None) -> Task:
    """The next-line task on tinyshakespeare's held-out tail (few-shot examples from the rest)."""
    if text is None:
        from minillama.data.corpora import load_text

        text = load_text("tinyshakespeare")
    split = text.rfind("\n\n", 0, int(len(text) * (1 - HELD_OUT_FRACTION)))
    items = next_line_items(text[split:], n_items, seed, "next-line")
    fewshot = next_line_items(text[:split], 50, seed + 1, "next-line-train")
    return Task("shakespeare-next-line", items, fewshot, target_delimiter="")


def arithmetic(n_items: int = 200, seed: int = 0) -> Task:
    """Two-digit additions with three wrong sums nearby (off by 1, by 10, and a digit swap or a random offset)."""

    def items(n: int, rng: random.Random, prefix: str) -> list[Item]:
        out = []
        while len(out) < n:
            a, b = rng.randrange(10, 100), rng.randrange(10, 100)
            total = a + b
            wrong = {total + 1, total - 10, int(str(total)[::-1])} - {total}
            while len(wrong) < 3:
                wrong.add(total + rng.choice([-11, -2, 2, 9, 11, 20]))
            choices = [str(x) for x in sorted(wrong)[:3]]
            gold = rng.randrange(4)
            choices.insert(gold, str(total))
            out.append(Item(f"{prefix}-{len(out)}", f"Question: What is {a} plus {b}?\nAnswer:", tuple(choices),
                            gold))
        return out

    rng = random.Random(seed)
    return Task("arithmetic", items(n_items, rng, "arithmetic"), items(50, rng, "arithmetic-train"))


register("shakespeare-next-line")(shakespeare_next_line)
register("arithmetic")(arithmetic)
