"""Each chapter's first code cell installs the book's package from the one source set in `pyproject.toml`."""

from __future__ import annotations

import json

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest
from _fresh_venv import ROOT, install_cell

import minillama

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _install_line(path):
    source = "".join(install_cell.first_code_cell(json.loads(path.read_text(encoding="utf-8")))["source"])
    match = install_cell.INSTALL_LINE.search(source)
    assert match, f"{path.name}: the first code cell does not install minillama when it is missing"
    return match, source


def test_the_source_is_this_version():
    assert install_cell.install_source().endswith(f"@v{minillama.__version__}")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_install_cell_uses_the_configured_source_and_real_extras(chapter):
    match, source = _install_line(chapter)
    assert match["source"] == install_cell.install_source(), "run scripts/sync_install_cell.py"
    assert "try:\n    import minillama\nexcept ImportError:" in source
    extras = match["extras"].strip("[]").split(",") if match["extras"] else []
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"]), extras


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_a_chapter_that_needs_an_optional_library_declares_its_extra(chapter):
    text = chapter.read_text(encoding="utf-8")
    match, _ = _install_line(chapter)
    extras = set(match["extras"].strip("[]").split(",")) if match["extras"] else set()
    if "import transformers" in text:
        assert "hf" in extras, f"{chapter.name} imports transformers: declare minillama[hf]"
    if "Llama3Tokenizer(" in text or "llama_models" in text:
        assert "llama3" in extras, f"{chapter.name} uses Meta's tokenizer: declare minillama[llama3]"
