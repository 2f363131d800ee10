"""Grade a folder of exercise submissions on this machine, without Docker.

`otter grade` runs each submission in a Docker container. This script instead runs otter's non-containerized grader,
`otter run`, once per submission (in parallel processes) and collects the scores into one CSV file. It grades in the
current Python environment, so install what the exercises import first (`pip install otter-grader numpy`; with
`torch` and `tiktoken` installed, some hidden tests also compare against them).

    python exercises/grade.py exercises/_dist/autograder/01_autograd/01_autograd-autograder.zip submissions/ \\
        -o grades.csv

Submissions are the students' `.ipynb` files (or the `.zip` files that otter's `grader.export()` writes), found
anywhere under the folder. Each row of the CSV has the points per question, the total, and a note: `imports
minillama` when a code cell mentions the package (its questions score 0: the tests refuse it), or the grader's error.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GradeReport:
    """The result of grading one submission with one autograder."""

    submission: Path
    scores: dict[str, float] = field(default_factory=dict)  # question name -> points earned
    possible: dict[str, float] = field(default_factory=dict)  # question name -> points available
    error: str = ""  # why grading failed, if it did (then every question counts 0)

    @property
    def total(self) -> float:
        return sum(self.scores.values())

    @property
    def total_possible(self) -> float:
        return sum(self.possible.values())


def grade_submission(submission: Path, autograder: Path, *, timeout: float = 600.0) -> GradeReport:
    """Grade one notebook (or submission zip) with an otter autograder zip: `otter run`, no container.

    `otter run` executes the whole notebook in a fresh Jupyter kernel of this environment, then runs every public and
    hidden test, and writes `results.json` (the Gradescope results format) to its output folder.
    """
    submission, autograder = Path(submission).resolve(), Path(autograder).resolve()
    report = GradeReport(submission)
    with tempfile.TemporaryDirectory(prefix="minillama-grade-") as out:
        command = [sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(autograder), "-o", out, str(submission)]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=out)
        except subprocess.TimeoutExpired:
            report.error = f"grading took longer than {timeout:.0f} s"
            return report
        results = Path(out) / "results.json"
        if run.returncode != 0 or not results.is_file():
            report.error = f"otter run failed (exit {run.returncode}): {(run.stderr or run.stdout).strip()[-2000:]}"
            return report
        for test in json.loads(results.read_text(encoding="utf-8"))["tests"]:
            if test.get("max_score") is None:  # the "Public Tests" summary entry carries no points
                continue
            report.scores[test["name"]] = float(test.get("score") or 0.0)
            report.possible[test["name"]] = float(test["max_score"])
    return report


def mentions_minillama(submission: Path) -> bool:
    """Whether a code cell of a notebook submission mentions `minillama` (a zip is not opened)."""
    if submission.suffix != ".ipynb":
        return False
    notebook = json.loads(submission.read_text(encoding="utf-8"))
    return any(
        "minillama" in "".join(cell.get("source", ""))
        for cell in notebook.get("cells", [])
        if cell.get("cell_type") == "code"
    )


def find_submissions(folder: Path) -> list[Path]:
    """Every `.ipynb` and `.zip` file under `folder`, in a stable order, skipping Jupyter's checkpoints."""
    found = [
        path
        for pattern in ("*.ipynb", "*.zip")
        for path in folder.rglob(pattern)
        if ".ipynb_checkpoints" not in path.parts
    ]
    return sorted(found)


def write_csv(reports: list[GradeReport], path: Path, root: Path) -> None:
    questions = sorted({name for report in reports for name in report.possible})
    possible = {name: next(r.possible[name] for r in reports if name in r.possible) for name in questions}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", *(f"{q} (/{possible[q]:g})" for q in questions), "total", "possible", "note"])
        for report in reports:
            notes = [report.error] if report.error else []
            if mentions_minillama(report.submission):
                notes.append("imports minillama")
            writer.writerow(
                [
                    report.submission.relative_to(root),
                    *(f"{report.scores.get(q, 0.0):g}" for q in questions),
                    f"{report.total:g}",
                    f"{sum(possible.values()):g}",
                    "; ".join(notes),
                ]
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("autograder", type=Path, help="the autograder zip from `python exercises/build.py`")
    parser.add_argument("submissions", type=Path, help="a folder of submitted notebooks (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, default=Path("grades.csv"), help="CSV file to write")
    parser.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1), help="submissions at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per submission")
    args = parser.parse_args(argv)
    if not args.autograder.is_file():
        parser.error(f"no autograder zip at {args.autograder}: build it with `python exercises/build.py`")
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of submissions")
    submissions = find_submissions(args.submissions)
    if not submissions:
        parser.error(f"no .ipynb or .zip files under {args.submissions}")

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        reports = list(pool.map(lambda s: grade_submission(s, args.autograder, timeout=args.timeout), submissions))
    write_csv(reports, args.output, args.submissions.resolve())
    for report in reports:
        name = report.submission.relative_to(args.submissions.resolve())
        status = f"  ({report.error.splitlines()[0]})" if report.error else ""
        print(f"{report.total:6g} / {report.total_possible:g}  {name}{status}")
    print(f"wrote {args.output} ({len(reports)} submissions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
