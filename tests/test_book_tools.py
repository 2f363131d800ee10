"""The book's tidy tool and browser check find what they claim to find (each run on a small made-up input)."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tidy_moves_markers_to_tags_drops_noqa_and_reports_long_lines(tmp_path):
    tidy = load_script("scripts/tidy_notebooks.py")
    cells = [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 1,
         "source": ["# NBVAL_IGNORE_OUTPUT\n", "f = lambda x: x  # noqa: E731\n", "plt.show()"]},
        {"cell_type": "code", "metadata": {"tags": ["nbval-skip"]}, "outputs": [], "execution_count": 2,
         "source": ["x = 1  # keep this comment\n", "y = '" + "a" * 90 + "'"]},
        {"cell_type": "markdown", "metadata": {}, "source": ["# NBVAL_SKIP stays in prose"]},
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert tidy.main([str(path), "--tag-plots"]) == 1  # the 97-column line is reported
    first, second, prose = json.loads(path.read_text())["cells"]
    assert "".join(first["source"]) == "f = lambda x: x\nplt.show()"
    assert first["metadata"]["tags"] == ["nbval-ignore-output", "hide-input"]
    assert "".join(second["source"]).startswith("x = 1  # keep this comment\n")
    assert second["metadata"]["tags"] == ["nbval-skip"]
    assert prose["source"] == ["# NBVAL_SKIP stays in prose"]
    with pytest.raises(ValueError, match="unknown nbval marker"):
        tidy.tidy_source("# NBVAL_TYPO\nx = 1", [])


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (apt-get install chromium)")
def test_browser_check_finds_each_problem_and_passes_a_clean_page(tmp_path):
    check = load_script(".ci/check_book_browser.py")
    cell = (
        '<div class="cell"><div class="cell_input"><pre>{code}</pre></div>'
        '<div class="cell_output">{outs}</div></div>'
    )
    box = '<div class="output {kind}"><pre>{text}</pre></div>'
    bad = "<main>" + "".join([
        cell.format(code="# NBVAL_IGNORE_OUTPUT\nprint(1)", outs=box.format(kind="stream", text="1")),
        cell.format(code="x = '" + "a" * 300 + "'", outs=""),
        cell.format(code="print(1); print(2)", outs=box.format(kind="stream", text="1") * 2),
        '<img src="missing.png">',
    ]) + "</main>"
    good = "<main>" + cell.format(code="print(1)", outs=box.format(kind="stream", text="1\n2")) + "</main>"
    style = "<style>main { width: 600px } pre { overflow-x: auto }</style>"
    (tmp_path / "bad.html").write_text(style + bad)
    (tmp_path / "good.html").write_text(style + good)
    reports = check.inspect_pages([tmp_path / "bad.html", tmp_path / "good.html"], shutil.which("chromium"))
    bad_report, good_report = reports[str(tmp_path / "bad.html")], reports[str(tmp_path / "good.html")]
    assert len(bad_report["overflowing"]) == 1 and bad_report["overflowing"][0].startswith("cell 1:")
    assert bad_report["broken"] == ["missing.png"]
    assert bad_report["split"] == ["cell 2: 2 stdout and 0 stderr boxes"]
    assert bad_report["scaffolding"] == ["NBVAL_IGNORE_OUTPUT"]
    assert len(check.problems_of(bad_report)) == 4
    assert check.problems_of(good_report) == []


def test_every_bibliography_entry_links_to_its_source():
    # A DOI or an arXiv abstract (url) on every entry; a plain URL only where neither exists (reports, posts, books).
    text = (ROOT / "book" / "references.bib").read_text()
    entries = re.findall(r"@\w+\{([^,]+),(.*?)\n\}", text, re.S)
    assert len(entries) > 50
    unlinked = [key for key, body in entries if not re.search(r"^\s*(doi|url)\s*=|\\url\{", body, re.M)]
    assert unlinked == [], f"bibliography entries without a DOI, arXiv or URL link: {unlinked}"
