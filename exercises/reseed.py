"""Make a private copy of an exercise set whose hidden tests draw different random data.

The master notebooks are public, so a student can read the hidden tests. For graded work, give the hidden tests new
random inputs: this script copies `exercises/NN_slug/` to a folder of yours and replaces every literal seed in the
hidden test cells (`np.random.default_rng(3)`, `np.random.seed(3)`, `torch.manual_seed(3)`, `random.Random(3)`,
`random.seed(3)`, `torch.Generator().manual_seed(3)`) with one derived from your secret. The hidden tests compute
their expected values from references (finite differences, closed forms, loops), not from stored numbers, so they
hold for any seed; `--check` proves it by building the copy and grading its solutions (full marks) and stubs (zero).

    python exercises/reseed.py 05_numpy_llama ~/private/exercises --secret "spring 2027" --check
    python exercises/build.py --out ~/private/dist ...   # then build from the copy: see for_instructors.md
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

EXERCISES = Path(__file__).resolve().parent
SEED_CALL = re.compile(r"\b(default_rng|seed|manual_seed|Random)\((\d+)\)")


def new_seed(secret: str, slug: str, cell: int, old: int) -> int:
    digest = hashlib.sha256(f"{secret}|{slug}|{cell}|{old}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def is_hidden_test(source: str) -> bool:
    return "# BEGIN TEST CONFIG" in source and re.search(r"^hidden:\s*true", source, flags=re.MULTILINE) is not None


def reseed_notebook(notebook: dict, secret: str, slug: str) -> int:
    """Replace the literal seeds of the hidden test cells in place; return how many were replaced."""
    count = 0
    for index, cell in enumerate(notebook["cells"]):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") != "code" or not is_hidden_test(source):
            continue

        def replace(match: re.Match, cell_index: int = index) -> str:
            nonlocal count
            count += 1
            return f"{match.group(1)}({new_seed(secret, slug, cell_index, int(match.group(2)))})"

        cell["source"] = SEED_CALL.sub(replace, source).splitlines(keepends=True)
        cell["outputs"] = []
    return count


def reseed_set(slug: str, destination: Path, secret: str) -> tuple[Path, int]:
    """Copy exercises/<slug>/ into destination/<slug>/ and reseed its master notebook's hidden tests."""
    source = EXERCISES / slug
    if not (source / f"{slug}.ipynb").is_file():
        raise SystemExit(f"no exercise set {slug} in {EXERCISES}")
    target = destination / slug
    if target.exists():
        raise SystemExit(f"{target} exists: choose an empty destination")
    shutil.copytree(source, target)
    master = target / f"{slug}.ipynb"
    notebook = json.loads(master.read_text(encoding="utf-8"))
    count = reseed_notebook(notebook, secret, slug)
    master.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return master, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slug", help="the exercise set, e.g. 05_numpy_llama")
    parser.add_argument("destination", type=Path, help="a private folder for the copy")
    parser.add_argument("--secret", required=True, help="any text only you know; the same text gives the same seeds")
    parser.add_argument("--check", action="store_true", help="build the copy and grade its solutions and stubs")
    args = parser.parse_args(argv)
    master, count = reseed_set(args.slug, args.destination, args.secret)
    print(f"{master}: {count} seeds replaced in the hidden tests")
    if args.check:
        spec = importlib.util.spec_from_file_location("minillama_exercises_build", EXERCISES / "build.py")
        build = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = build
        spec.loader.exec_module(build)
        built = build.build_one(master, args.destination / "_dist")
        return 0 if build.check([built]) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
