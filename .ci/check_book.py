"""After `jupyter-book build`: every page of _toc.yml was built and is linked from the book's landing page."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"


def toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


def main() -> int:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    index = (HTML / "index.html").read_text()
    landing = re.search(r'url=([^"]+)"', index)
    landing_page = HTML / (landing.group(1) if landing else "index.html")
    links = set(re.findall(r'href="([^"#]+)', landing_page.read_text()))
    resolved = {(landing_page.parent / link).resolve() for link in links if not link.startswith("http")}
    problems = []
    for name in toc_files(toc):
        page = (HTML / f"{name}.html").resolve()
        if not page.is_file():
            problems.append(f"{name}: no {page.relative_to(HTML)} in the built book")
        elif page not in resolved and page != landing_page.resolve():
            problems.append(f"{name}: not linked from {landing_page.relative_to(HTML)}")
    for problem in problems:
        print("check_book:", problem)
    print(f"check_book: {len(toc_files(toc))} pages in the toc, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
