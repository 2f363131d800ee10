"""Read a submission's code cells (as a syntax tree, never running them) and report what could defeat the grader.

The grading kernel blocks the forbidden packages and checks that the test runner and numpy are genuine
(`grading_guard.py`); this scan is the second line, outside the kernel: it names, per student, each construct an
honest answer does not need (patching the grader or numpy, `sys.modules`, `inspect`, `exec`/`eval`, `importlib`,
process launches, kernel internals, forbidden libraries), with the cell and line, so an instructor can read the code.
An import of a blocked package in a cell after the last `grader.check` cell, used by no function, is the honest
"compare with the book's package when you are done" and is reported as a note, not a flag.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

GRADER_NAMES = {"otter", "grader", "Checker", "test_case", "TestFile", "GradingResults", "Notebook"}
LIBRARY_NAMES = {"np", "numpy", "math", "builtins", "__builtins__"}
SYS_ATTRIBUTES = {"modules", "meta_path", "path_hooks", "path_importer_cache", "addaudithook", "audit", "settrace",
                  "setprofile", "_getframe", "displayhook"}
BENIGN_MAGICS = ("%%timeit", "%%time", "%timeit", "%time", "%matplotlib", "%precision")
RISKY_MODULES = {
    "inspect": "inspect",
    "importlib": "importlib",
    "ctypes": "ctypes",
    "gc": "gc (reaches every object)",
    "subprocess": "starts processes",
    "signal": "signal (timeouts)",
    "builtins": "builtins",
}
RISKY_CALLS = {"exec": "exec/eval", "eval": "exec/eval", "compile": "exec/eval", "__import__": "importlib",
               "globals": "globals()", "setattr": None, "delattr": None}

# The first code cell of every student notebook: it makes `grader.check` work on a laptop and on Colab, where the
# notebook is opened on its own and the public tests arrive in the zip the student uploads. The master notebook does
# not have it, so that running the master (nbval, `otter assign`) never writes otter's log file into the repository.
SETUP_CELL = '''\
# Run this cell first: it sets up `grader.check("q1")`, which runs the public tests of a question.
# On Colab, first upload {slug}.zip (from your instructor) with the Files pane on the left.
import os
import zipfile

try:
    import otter
except ImportError:  # Colab or a fresh environment: install the checker
    %pip install -q "otter-grader==7.*"
    import otter

if not os.path.isdir("tests") and os.path.isfile("{slug}.zip"):
    with zipfile.ZipFile("{slug}.zip") as archive:
        archive.extractall(members=[name for name in archive.namelist() if name.startswith("tests/")])
grader = otter.Notebook(tests_dir="tests")'''


def is_setup_cell(source: str) -> bool:
    """Whether a cell is the locked setup cell of a student notebook, unchanged."""
    match = re.search(r"upload (\S+)\.zip", source)
    return bool(match) and source.strip() == SETUP_CELL.format(slug=match.group(1)).strip()


@dataclass(frozen=True)
class Finding:
    """One construct found in a submission: `flag` ones need a look; the others are notes."""

    kind: str  # "grader patching", "numpy patching", "sys internals", "exec/eval", "forbidden library", ...
    detail: str
    cell: int  # index of the code cell in the notebook
    line: int
    flag: bool = True

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail} (cell {self.cell}, line {self.line})"


def _root(node: ast.AST) -> str | None:
    """The first name of an attribute chain or subscript: `np` for `np.testing.assert_allclose`."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _python_source(source: str) -> str:
    """Cell source with IPython syntax (`!cmd`, `%magic`) turned into the Python it runs; timing magics dropped."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        magic = next((m for m in BENIGN_MAGICS if stripped.startswith(m)), None)
        if magic is None:
            lines.append(line)
        elif not magic.startswith("%%") and magic in ("%timeit", "%time"):
            lines.append(line[: len(line) - len(stripped)] + stripped[len(magic):].lstrip())
    source = "\n".join(lines)
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with otter
        return source
    return TransformerManager().transform_cell(source)


def code_cells(notebook: dict) -> list[str]:
    return ["".join(cell.get("source", "")) for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"]


def scan_source(cells: list[str], blocked: list[str], flagged: list[str] = ()) -> list[Finding]:
    """Every finding in a list of code-cell sources (in notebook order)."""
    findings: list[Finding] = []
    last_check = max((i for i, src in enumerate(cells) if 'grader.check("' in src or "grader.check('" in src),
                     default=len(cells))
    late_names: dict[str, Finding] = {}
    function_names_used: set[str] = set()
    forbidden = set(blocked) | set(flagged)
    for index, source in enumerate(cells):
        if is_setup_cell(source):
            continue  # the locked setup cell imports otter and unpacks the tests
        try:
            tree = ast.parse(_python_source(source))
        except SyntaxError as error:
            findings.append(Finding("syntax error", str(error.msg), index, error.lineno or 0, flag=False))
            continue
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                function_names_used |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            found = _examine(node, index, forbidden, set(blocked))
            for finding in found:
                late = finding.kind == "forbidden library" and id(node) in top_level and index > last_check
                if late and isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [alias.asname or alias.name.split(".")[0] for alias in node.names]
                    note = Finding("late import", f"{finding.detail} after the last question (not flagged)",
                                   index, finding.line, flag=False)
                    for name in names:
                        late_names[name] = note
                    findings.append(note)
                else:
                    findings.append(finding)
    for name, note in late_names.items():
        if name in function_names_used:
            findings.append(Finding("forbidden library", f"a function uses {name}, imported late", note.cell,
                                    note.line))
    return findings


def _examine(node: ast.AST, cell: int, forbidden: set[str], blocked: set[str]) -> list[Finding]:
    line = getattr(node, "lineno", 0)
    found = []

    def add(kind, detail):
        found.append(Finding(kind, detail, cell, line))

    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for module in modules:
            top = module.split(".")[0]
            if top in forbidden:
                add("forbidden library", f"imports {module}" + (" (blocked)" if top in blocked else ""))
            elif top in RISKY_MODULES:
                add(RISKY_MODULES[top].split(" ")[0] if top != "subprocess" else "processes", f"imports {module}")
            elif top == "otter" and module != "otter":
                add("grader patching", f"imports {module}")
            elif top == "sys" and isinstance(node, ast.ImportFrom):
                names = {alias.name for alias in node.names} & SYS_ATTRIBUTES
                if names:
                    add("sys internals", f"from sys import {', '.join(sorted(names))}")
    elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for target in targets:
            if isinstance(target, (ast.Attribute, ast.Subscript)):
                root = _root(target)
                if root in GRADER_NAMES:
                    add("grader patching", f"changes {ast.unparse(target)}")
                elif root in LIBRARY_NAMES:
                    add("numpy patching", f"changes {ast.unparse(target)}")
    elif isinstance(node, ast.Call):
        function = node.func
        name = function.id if isinstance(function, ast.Name) else None
        if name in ("setattr", "delattr") and node.args:
            root = _root(node.args[0])
            if root in GRADER_NAMES:
                add("grader patching", f"{name}({ast.unparse(node.args[0])}, ...)")
            elif root in LIBRARY_NAMES or root == "sys":
                add("numpy patching" if root != "sys" else "sys internals", f"{name}({ast.unparse(node.args[0])}, ...)")
        elif name in RISKY_CALLS and RISKY_CALLS[name]:
            add(RISKY_CALLS[name], f"calls {name}()")
        elif isinstance(function, ast.Attribute) and _root(function) == "os" and function.attr in (
            "system", "popen", "execv", "execl", "spawnv", "posix_spawn", "fork"
        ):
            add("processes", f"calls os.{function.attr}()")
    elif isinstance(node, ast.Attribute):
        root = _root(node)
        if root == "sys" and node.attr in SYS_ATTRIBUTES:
            add("sys internals", f"uses sys.{node.attr}")
        elif root in ("get_ipython",) or node.attr in ("__code__", "__globals__", "__closure__", "f_back",
                                                        "f_globals", "__subclasses__"):
            add("kernel internals", f"uses {ast.unparse(node)}")
    elif isinstance(node, ast.Name) and node.id in ("__builtins__", "In", "_ih", "Out", "_oh") and isinstance(
        node.ctx, ast.Load
    ):
        add("kernel internals", f"uses {node.id}")
    return found


def scan_notebook(path: Path, blocked: list[str], flagged: list[str] = ()) -> list[Finding]:
    """The findings of a notebook submission (an export zip is not opened: an empty list)."""
    path = Path(path)
    if path.suffix != ".ipynb":
        return []
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return scan_source(code_cells(notebook), blocked, flagged)
