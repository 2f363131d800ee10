"""Every chapter runs as a reader meets it: from the installed wheel, alone in an empty folder, offline.

Each notebook is copied alone into a new folder and executed top to bottom by a Jupyter kernel of a fresh virtual
environment that has only the wheel (with the extras the chapters' install cells declare) and a kernel: no clone,
no repository paths. Corpora come through `load_text` from the data mirror (`MINILLAMA_DATA_MIRROR`), as in CI;
recorded runs come from the package (`minillama.recorded`). nbval checks the outputs; this checks that the chapter
runs at all outside the repository. Slow (the chapters once more), part of `make test`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from _fresh_venv import ROOT, run

pytestmark = pytest.mark.slow

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))

# Runs inside the fresh venv: execute the notebook with that venv's own kernel, then report where minillama came from.
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
notebook = nbformat.read(sys.argv[1], as_version=4)
probe = "import sys, minillama; print('probe:', sys.executable, minillama.__file__)"
notebook.cells.append(nbformat.v4.new_code_cell(probe))
NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
print(notebook.cells[-1].outputs[0]["text"], end="")
"""


@pytest.fixture(scope="module")
def reader_cache(tmp_path_factory) -> Path:
    """One download/tokenizer cache for all chapters, new for this test session (nothing from the clone's)."""
    return tmp_path_factory.mktemp("reader-cache")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_chapter_runs_from_the_wheel_in_an_empty_folder(installed, chapter, reader_cache, tmp_path):
    folder = tmp_path / "reader"
    folder.mkdir()
    shutil.copy(chapter, folder / chapter.name)
    env = {**os.environ, "MINILLAMA_CACHE": str(reader_cache), "JUPYTER_PATH": "", "MPLBACKEND": "agg",
           "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")}
    env.pop("PYTHONPATH", None)
    output = run([installed.bin("python"), "-c", RUNNER, chapter.name], timeout=1200, cwd=folder, env=env)
    probe = next(line for line in output.splitlines() if line.startswith("probe: "))
    executable, module = probe.split()[1:]
    assert executable.startswith(str(installed.venv)), f"the kernel ran {executable}, not the fresh venv"
    assert module.startswith(str(installed.venv)), f"minillama came from {module}, not the installed wheel"
    assert sorted(path.name for path in folder.iterdir() if path.suffix == ".ipynb") == [chapter.name]


def test_every_chapter_is_covered():
    assert len(CHAPTERS) >= 10 and all(json.loads(path.read_text())["cells"] for path in CHAPTERS)
