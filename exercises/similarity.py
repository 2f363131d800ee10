"""Which submissions answer nearly the same way: a report of pairs for an instructor to read, never a verdict.

Each answered function (a `def` whose body is not the stub's `raise NotImplementedError`) is reduced to the shape
of its syntax tree: docstrings and comments dropped, every variable, argument and attribute name replaced by its
order of first appearance, so renaming and reformatting change nothing. Two answers are compared by the Jaccard
index of their 6-token shingles; a pair of submissions scores the mean over the functions both answered. Short
answers are alike by necessity, so a high score is a reason to look, not proof of copying.
"""

from __future__ import annotations

import ast
import csv
import itertools
import json
import re
from pathlib import Path

THRESHOLD = 0.85  # pairs at or above this mean similarity are reported
SHINGLE = 6


def _normalised(function: ast.FunctionDef) -> list[str]:
    """The tokens of a function's tree with its names replaced by v0, v1, ... in order of appearance."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        return names.setdefault(name, f"v{len(names)}")

    module = ast.Module(body=body, type_ignores=[])
    for node in ast.walk(module):
        if isinstance(node, ast.Name):
            node.id = rename(node.id)
        elif isinstance(node, ast.arg):
            node.arg = rename(node.arg)
        elif isinstance(node, ast.Attribute):
            node.attr = rename(node.attr)
    return re.findall(r"\w+|[^\w\s]", ast.unparse(module))


def answers(notebook_path: Path) -> dict[str, list[str]]:
    """Function name -> normalised tokens, for every answered function of a notebook submission."""
    path = Path(notebook_path)
    if path.suffix != ".ipynb":
        return {}
    notebook = json.loads(path.read_text(encoding="utf-8"))
    found = {}
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell.get("source", "")))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and "NotImplementedError" not in ast.unparse(node):
                found[node.name] = _normalised(node)
    return found


def jaccard(a: list[str], b: list[str]) -> float:
    shingles_a = {tuple(a[i : i + SHINGLE]) for i in range(max(1, len(a) - SHINGLE + 1))}
    shingles_b = {tuple(b[i : i + SHINGLE]) for i in range(max(1, len(b) - SHINGLE + 1))}
    return len(shingles_a & shingles_b) / len(shingles_a | shingles_b)


def similar_pairs(submissions: list[Path], threshold: float = THRESHOLD) -> list[tuple[Path, Path, float, list[str]]]:
    """(a, b, mean similarity, functions both answered) for each pair at or above the threshold, most alike first."""
    parsed = {path: answers(path) for path in submissions}
    pairs = []
    for a, b in itertools.combinations(submissions, 2):
        common = sorted(parsed[a].keys() & parsed[b].keys())
        if not common:
            continue
        score = sum(jaccard(parsed[a][name], parsed[b][name]) for name in common) / len(common)
        if score >= threshold:
            pairs.append((a, b, score, common))
    return sorted(pairs, key=lambda pair: -pair[2])


def write_report(pairs, path: Path, root: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission a", "submission b", "similarity", "functions compared"])
        for a, b, score, common in pairs:
            writer.writerow([a.relative_to(root).as_posix(), b.relative_to(root).as_posix(), f"{score:.3f}",
                             " ".join(common)])
