"""The built book as a reader sees it: open pages of _build/html in headless Chromium and check what renders.

Per page, at a 1400 px wide window:
  * no code or output block scrolls sideways (a `pre` or an output box whose content is wider than the box),
  * no test scaffolding in the text (`NBVAL_` markers, `# noqa`),
  * no broken images (every `img` decodes),
  * no split stream output (one cell showing several stdout boxes, or several stderr boxes).
Chapters are enabled one by one: `PAGES` lists the pages CI checks (extend it as chapters are reworked); `--pages`
checks others, `--all` every page of `_toc.yml`. Uses Debian's `chromium` (found on PATH, or `--chromium PATH`)
through the `playwright` package. Exit status 1 when a check fails, 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
WIDTH, HEIGHT = 1400, 900
PAGES = [  # pages that must pass in CI: every chapter and the front matter
    "chapters/00_setup",
    "chapters/01_autograd",
    "chapters/02_tokenization",
    "chapters/03_language_models_and_layers",
    "chapters/04_attention",
    "chapters/05_numpy_llama",
    "chapters/06_pytorch_llama",
    "chapters/07_training",
    "chapters/08_gpus",
    "chapters/09_distributed",
    "chapters/10_data",
    "chapters/11_scaling_laws",
    "chapters/12_evaluation",
    "chapters/13_inference",
    "book/intro",
    "book/how_to_use",
    "book/exercises",
    "book/for_instructors",
    "book/setup",
    "book/glossary",
    "book/bibliography",
]

# Runs in the page; returns everything the checks need as plain data.
INSPECT_PAGE = """
async () => {
  const main = document.querySelector('main') || document.body;
  // Every code or text block, and the output boxes that hold no <pre> (HTML tables, images), counted once each.
  const outputs = [...main.querySelectorAll('div.cell_output > div.output')];
  const blocks = [...main.querySelectorAll('pre'), ...outputs.filter((o) => !o.querySelector('pre'))];
  const describe = (el) => {
    const cell = el.closest('div.cell');
    const cells = [...main.querySelectorAll('div.cell')];
    const where = cell ? `cell ${cells.indexOf(cell)}` : 'text';
    const first = (el.textContent || '').split('\\n').find((line) => line.trim()) || '';
    return `${where}: ${first.trim().slice(0, 70)}`;
  };
  const overflowing = blocks
    .filter((el) => el.scrollWidth > el.clientWidth + 1)
    .map((el) => `${describe(el)} (${el.scrollWidth} px in ${el.clientWidth} px)`);
  const images = await Promise.all([...main.querySelectorAll('img')].map((img) => new Promise((resolve) => {
    const probe = new Image();
    probe.onload = () => resolve(probe.naturalWidth > 0 ? null : img.getAttribute('src'));
    probe.onerror = () => resolve(img.getAttribute('src'));
    probe.src = img.src;
  })));
  const split = [...main.querySelectorAll('div.cell')].flatMap((cell, index) => {
    const boxes = [...cell.querySelectorAll('div.cell_output > div.output')];
    const stdout = boxes.filter((o) => o.classList.contains('stream')).length;
    const stderr = boxes.filter((o) => o.classList.contains('stderr')).length;
    return stdout > 1 || stderr > 1 ? [`cell ${index}: ${stdout} stdout and ${stderr} stderr boxes`] : [];
  });
  const text = main.innerText;
  const scaffolding = [...new Set(text.match(/NBVAL_[A-Z_]+|#\\s*noqa\\b[:\\w ,]*/g) || [])];
  return {blocks: blocks.length, overflowing, broken: images.filter((src) => src), split, scaffolding};
}
"""


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            pages.append(chapter["file"])
            pages.extend(section["file"] for section in chapter.get("sections", []))
    return pages


def problems_of(report: dict) -> list[str]:
    """One line per failed check, from the data INSPECT_PAGE returned for a page."""
    problems = [f"scrolls sideways: {block}" for block in report["overflowing"]]
    problems += [f"broken image: {src}" for src in report["broken"]]
    problems += [f"split stream output: {cell}" for cell in report["split"]]
    problems += [f"test scaffolding in the text: {text!r}" for text in report["scaffolding"]]
    return problems


def inspect_pages(paths: list[Path], chromium: str) -> dict[str, dict]:
    """Open each HTML file at WIDTH px in headless Chromium; returns {path: what INSPECT_PAGE found}."""
    from playwright.sync_api import sync_playwright

    reports = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        # The book loads MathJax and thebe from CDNs; offline they would only slow each page down.
        page.route("http*://**", lambda route: route.abort())
        for path in paths:
            page.goto(path.as_uri(), wait_until="load")
            reports[str(path)] = page.evaluate(INSPECT_PAGE)
        browser.close()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", nargs="+", help="pages to check, as in _toc.yml (default: PAGES)")
    parser.add_argument("--all", action="store_true", help="check every page of _toc.yml")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--verbose", action="store_true", help="list every problem, not the first 5 per page")
    args = parser.parse_args(argv)
    pages = toc_pages() if args.all else (args.pages or PAGES)
    if not args.chromium:
        print("check_book_browser: no chromium on PATH (apt-get install chromium); cannot check", file=sys.stderr)
        return 2
    missing = [page for page in pages if not (HTML / f"{page}.html").is_file()]
    if missing:
        print(f"check_book_browser: not in {HTML} (run `make book` first): {missing}", file=sys.stderr)
        return 2
    total_blocks = total_overflowing = failed_pages = 0
    for name, report in inspect_pages([HTML / f"{page}.html" for page in pages], args.chromium).items():
        problems = problems_of(report)
        total_blocks += report["blocks"]
        total_overflowing += len(report["overflowing"])
        failed_pages += bool(problems)
        print(
            f"check_book_browser: {Path(name).relative_to(HTML).with_suffix('')}: {len(report['overflowing'])} of "
            f"{report['blocks']} blocks scroll sideways, {len(report['broken'])} broken images, "
            f"{len(report['split'])} split outputs, {len(report['scaffolding'])} scaffolding texts"
        )
        for problem in problems if args.verbose else problems[:5]:
            print(f"  {problem}")
        if len(problems) > 5 and not args.verbose:
            print(f"  ... and {len(problems) - 5} more (--verbose)")
    print(
        f"check_book_browser: {len(pages)} pages at {WIDTH} px, {total_overflowing} of {total_blocks} blocks scroll "
        f"sideways, {failed_pages} pages with problems"
    )
    return 1 if failed_pages else 0


if __name__ == "__main__":
    sys.exit(main())
