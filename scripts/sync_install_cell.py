"""Write the package source of `[tool.minillama] install-source` (pyproject.toml) into every chapter's install cell.

Each chapter's first code cell installs the book's package when it is missing (Colab, a fresh kernel):

    %pip install "minillama[EXTRAS] @ SOURCE"

The extras are the chapter's own (e.g. `[llama3]` for Meta's tokenizer); the source is one setting, here. Run
`python scripts/sync_install_cell.py` after changing it (or the version); `tests/test_chapter_install_cell.py`
fails while a chapter disagrees. Only that line changes, so outputs need no re-execution.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL_LINE = re.compile(r'%pip install (?:-q )?"minillama(?P<extras>\[[\w,\-]*\])? @ (?P<source>[^"]+)"')


def install_source() -> str:
    """The package source chapters install from, with `{version}` filled in from `minillama.__version__`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    sys.path.insert(0, str(ROOT))
    import minillama

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["tool"]["minillama"]["install-source"].format(version=minillama.__version__)


def first_code_cell(notebook: dict) -> dict:
    return next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")


def sync(path: Path, source: str) -> bool:
    """Rewrite the install line of one notebook; True if it changed."""
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    cell = first_code_cell(notebook)
    old = "".join(cell["source"])
    if not INSTALL_LINE.search(old):
        raise SystemExit(f"{path}: the first code cell has no `%pip install \"minillama... @ ...\"` line")
    new = INSTALL_LINE.sub(lambda m: f'%pip install "minillama{m["extras"] or ""} @ {source}"', old)
    if new == old:
        return False
    cell["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main() -> int:
    source = install_source()
    changed = [path.name for path in sorted((ROOT / "chapters").glob("*.ipynb")) if sync(path, source)]
    print(f"install source {source}: {len(changed)} chapters updated {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
