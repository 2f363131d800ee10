"""Tidy chapter notebooks so that test scaffolding is metadata, not text the reader sees.

nbval reads its markers from cell tags as well as from comments; the book renders comments but not tags. This tool
  * turns `# NBVAL_IGNORE_OUTPUT`-style comment lines into the equivalent cell tags (`nbval-ignore-output`, ...),
  * deletes `# noqa` comments (ruff does not lint chapters; the reader should not see linter talk),
  * with `--tag-plots`, tags cells that draw a matplotlib figure `hide-input` (the figure stays in the book),
  * reports code lines longer than 88 columns, 85 in `hide-input` cells (it does not rewrap code: that needs a
    person; `ruff format --line-length 88` does most of it).
It rewrites a notebook only when something changed, atomically, and keeps the outputs. Exit status 1 when a
notebook still has long lines, so it can guard CI:  python scripts/tidy_notebooks.py chapters/01_autograd.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

MAX_COLUMNS = 88
MAX_COLUMNS_HIDDEN = 85  # a hide-input cell shows its code in a narrower, indented box
MARKER_TAGS = {  # comment marker -> nbval's cell tag
    "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
    "NBVAL_SKIP": "nbval-skip",
    "NBVAL_CHECK_OUTPUT": "nbval-check-output",
    "NBVAL_RAISES_EXCEPTION": "raises-exception",
}
MARKER_LINE = re.compile(r"^\s*#\s*(NBVAL_[A-Z_]+)\s*$")
NOQA = re.compile(r"\s*#\s*noqa\b(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?")
PLOT = re.compile(r"\bplt\.(show|subplots|figure|plot)\b|\bfig\.savefig\b")


def tidy_source(source: str, tags: list[str]) -> str:
    """Move marker comments into `tags` and drop `# noqa` comments; returns the new source.

    >>> tags = []; tidy_source("# NBVAL_IGNORE_OUTPUT\\nf = lambda x: x  # noqa: E731", tags), tags
    ('f = lambda x: x', ['nbval-ignore-output'])
    """
    kept = []
    for line in source.split("\n"):
        marker = MARKER_LINE.match(line)
        if marker:
            if marker.group(1) not in MARKER_TAGS:
                raise ValueError(f"unknown nbval marker {marker.group(1)}; known: {sorted(MARKER_TAGS)}")
            tag = MARKER_TAGS[marker.group(1)]
            if tag not in tags:
                tags.append(tag)
            continue
        kept.append(NOQA.sub("", line) if "noqa" in line else line)
    return "\n".join(kept)


def tidy_notebook(path: Path, tag_plots: bool) -> tuple[bool, list[str]]:
    """Tidy one notebook in place; returns (changed, problems) where problems are the lines that are too long."""
    notebook = json.loads(path.read_text())
    changed, problems = False, []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        tags = list(cell.get("metadata", {}).get("tags", []))
        new_source = tidy_source(source, tags)
        if tag_plots and PLOT.search(new_source) and "hide-input" not in tags:
            tags.append("hide-input")
        if new_source != source or tags != cell.get("metadata", {}).get("tags", []):
            changed = True
            cell["source"] = new_source.splitlines(keepends=True)
            if tags:
                cell.setdefault("metadata", {})["tags"] = tags
        limit = MAX_COLUMNS_HIDDEN if "hide-input" in tags else MAX_COLUMNS
        for number, line in enumerate(new_source.split("\n"), start=1):
            if len(line) > limit:
                problems.append(f"{path}: cell {index} line {number}: {len(line)} columns")
    if changed:
        text = json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"  # as nbformat writes
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    return changed, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--tag-plots", action="store_true", help="tag cells that draw a figure hide-input")
    args = parser.parse_args(argv)
    all_problems = []
    for path in args.notebooks:
        if not path.is_file():
            print(f"tidy_notebooks: no such notebook: {path}", file=sys.stderr)
            return 2
        changed, problems = tidy_notebook(path, args.tag_plots)
        print(f"tidy_notebooks: {path}: {'rewritten' if changed else 'unchanged'}, {len(problems)} long lines")
        all_problems += problems
    for problem in all_problems:
        print(problem)
    return 1 if all_problems else 0


if __name__ == "__main__":
    sys.exit(main())
