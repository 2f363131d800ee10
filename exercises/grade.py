"""Grade a folder of exercise submissions on this machine, without Docker: scores, feedback, flags, late penalties.

`otter grade` runs each submission in a Docker container. This script runs otter's non-containerized grader,
`otter run`, once per submission (in parallel processes), with the autograder's guard plugin (`grading_guard.py`:
blocked imports, genuine test runner and numpy, a timeout per question). It grades in the current Python
environment: install the autograder's `requirements.txt` first.

    python exercises/grade.py exercises/_dist/autograder/01_autograd/01_autograd-autograder.zip submissions/ \\
        -o grades.csv [--deadline 2027-03-01T23:59 --penalty-per-day 10] [--similarity similarity.csv]

Writes `grades.csv` (points per question, total, lateness, penalty, final score, flags and notes) and, in
`grades_feedback/`, each student's otter `results.json` and a feedback file (every test case: name, passed or
failed, message). The flags come from reading the code (`scan.py`); `--similarity` adds a report of pairs of
submissions whose answers are nearly the same (`similarity.py`).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

EXERCISES = Path(__file__).resolve().parent


def _load_sibling(name: str):
    """Import exercises/<name>.py under a unique module name (these scripts are not a package)."""
    module_name = f"minillama_exercises_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXERCISES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


guard = _load_sibling("grading_guard")
scan = _load_sibling("scan")
similarity = _load_sibling("similarity")


@dataclass
class GradeReport:
    """The result of grading one submission with one autograder."""

    submission: Path
    scores: dict[str, float] = field(default_factory=dict)  # question name -> points earned
    possible: dict[str, float] = field(default_factory=dict)  # question name -> points available
    error: str = ""  # why grading failed, if it did (then every question counts 0)
    integrity: str = ""  # why the guard set every score to 0, if it did
    results: dict = field(default_factory=dict)  # otter's results.json (the Gradescope format)
    feedback: dict = field(default_factory=dict)  # every test case: name, hidden, points, passed, message
    findings: list = field(default_factory=list)  # scan.Finding of the submission's code

    @property
    def total(self) -> float:
        return sum(self.scores.values())

    @property
    def total_possible(self) -> float:
        return sum(self.possible.values())

    @property
    def flags(self) -> list:
        return [finding for finding in self.findings if finding.flag]


def autograder_policy(autograder: Path) -> dict:
    """The guard policy an autograder zip was built with (its otter_config.json), or the defaults."""
    with zipfile.ZipFile(autograder) as archive:
        config = json.loads(archive.read("otter_config.json"))
    for plugin in config.get("plugins", []):
        if isinstance(plugin, dict) and guard.PLUGIN_NAME in plugin:
            return {**guard.POLICY_DEFAULTS, **plugin[guard.PLUGIN_NAME]}
    return dict(guard.POLICY_DEFAULTS)


def grade_submission(submission: Path, autograder: Path, *, timeout: float = 900.0) -> GradeReport:
    """Grade one notebook (or submission zip) with an otter autograder zip: `otter run`, no container.

    `otter run` executes the notebook in a fresh Jupyter kernel of this environment with the autograder's plugins,
    runs every public and hidden test, and writes `results.json`. The guard plugin is imported from the zip.
    """
    submission, autograder = Path(submission).resolve(), Path(autograder).resolve()
    report = GradeReport(submission)
    policy = autograder_policy(autograder)
    report.findings = scan.scan_notebook(submission, policy["blocked"], policy.get("flagged", []))
    with tempfile.TemporaryDirectory(prefix="minillama-grade-") as out:
        plugin_dir = Path(out) / "plugin"
        plugin_dir.mkdir()
        with zipfile.ZipFile(autograder) as archive:
            guarded = "grading_guard.py" in archive.namelist()
            if guarded:
                (plugin_dir / "grading_guard.py").write_bytes(archive.read("grading_guard.py"))
        feedback = Path(out) / "feedback.json"
        env = dict(os.environ, **{guard.FEEDBACK_VARIABLE: str(feedback)})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_dir), env.get("PYTHONPATH", "")]))
        command = [sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(autograder), "-o", out, str(submission)]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=out, env=env)
        except subprocess.TimeoutExpired:
            report.error = f"grading took longer than {timeout:.0f} s"
            return report
        results = Path(out) / "results.json"
        if run.returncode != 0 or not results.is_file():
            report.error = f"otter run failed (exit {run.returncode}): {(run.stderr or run.stdout).strip()[-2000:]}"
            return report
        report.results = json.loads(results.read_text(encoding="utf-8"))
        if feedback.is_file():
            report.feedback = json.loads(feedback.read_text(encoding="utf-8"))
    for test in report.results["tests"]:
        if test.get("max_score") is None:  # summary entries carry no points
            continue
        report.scores[test["name"]] = float(test.get("score") or 0.0)
        report.possible[test["name"]] = float(test["max_score"])
    integrity = report.feedback.get("integrity", "ok" if not guarded else "the guard plugin did not run")
    report.integrity = "" if integrity == "ok" else integrity
    return report


def find_submissions(folder: Path) -> list[Path]:
    """Every `.ipynb` and `.zip` file under `folder`, in a stable order, skipping Jupyter's checkpoints."""
    found = [
        path
        for pattern in ("*.ipynb", "*.zip")
        for path in folder.rglob(pattern)
        if ".ipynb_checkpoints" not in path.parts
    ]
    return sorted(found)


# ---- lateness ------------------------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def read_timestamps(path: Path) -> dict[str, datetime]:
    """A CSV with columns `submission` (a path relative to the folder, or a file name) and `timestamp` (ISO 8601)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"submission", "timestamp"} <= set(rows[0]):
        raise SystemExit(f"{path}: needs the columns submission,timestamp; has {sorted(rows[0])}")
    return {row["submission"].strip(): parse_time(row["timestamp"]) for row in rows}


def days_late(submitted: datetime, deadline: datetime) -> int:
    """Started days after the deadline: 1 second late is 1 day."""
    seconds = (submitted - deadline).total_seconds()
    return max(0, math.ceil(seconds / 86400))


@dataclass
class Lateness:
    submitted: datetime | None
    days: int
    factor: float  # the fraction of the points kept


def lateness(report: GradeReport, root: Path, deadline: datetime | None, per_day: float,
             timestamps: dict[str, datetime] | None) -> Lateness:
    if deadline is None:
        return Lateness(None, 0, 1.0)
    relative = report.submission.relative_to(root).as_posix()
    if timestamps is not None:
        submitted = timestamps.get(relative) or timestamps.get(report.submission.name)
        if submitted is None:
            raise SystemExit(f"no timestamp for {relative} in the timestamps file")
    else:
        submitted = datetime.fromtimestamp(report.submission.stat().st_mtime, tz=timezone.utc)
    days = days_late(submitted, deadline)
    return Lateness(submitted, days, max(0.0, 1.0 - per_day / 100.0 * days))


# ---- output --------------------------------------------------------------------------------------------------


def write_csv(reports: list[GradeReport], path: Path, root: Path, late: list[Lateness] | None = None) -> None:
    questions = sorted({name for report in reports for name in report.possible}, key=_question_order)
    possible = {name: next(r.possible[name] for r in reports if name in r.possible) for name in questions}
    late = late or [Lateness(None, 0, 1.0)] * len(reports)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", *(f"{q} (/{possible[q]:g})" for q in questions), "total", "possible",
                         "submitted", "days late", "late penalty", "final", "flags", "note"])
        for report, lateness_ in zip(reports, late, strict=True):
            notes = [report.error] if report.error else []
            if report.integrity:
                notes.append(f"integrity: {report.integrity}")
            notes += [str(finding) for finding in report.findings if not finding.flag]
            penalty = report.total * (1.0 - lateness_.factor)
            writer.writerow(
                [
                    report.submission.relative_to(root).as_posix(),
                    *(f"{report.scores.get(q, 0.0):g}" for q in questions),
                    f"{report.total:g}",
                    f"{sum(possible.values()):g}",
                    lateness_.submitted.isoformat(timespec="seconds") if lateness_.submitted else "",
                    lateness_.days,
                    f"{penalty:g}",
                    f"{report.total - penalty:g}",
                    "; ".join(str(finding) for finding in report.flags),
                    "; ".join(notes),
                ]
            )


def _question_order(name: str):
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 0, name)


def feedback_text(report: GradeReport, name: str) -> str:
    """A student's feedback: the score, then every test case with its result and message."""
    lines = [f"# Feedback: {name}", "", f"Score: {report.total:g} / {report.total_possible:g}", ""]
    if report.error:
        lines += [f"Grading failed: {report.error}", ""]
    if report.integrity:
        lines += [f"Integrity check failed, every score set to 0: {report.integrity}", ""]
    for question in report.feedback.get("questions", []):
        lines += [f"## {question['name']}: {question['score']:g} / {question['possible']:g}", ""]
        for case in question["test_cases"]:
            kind = "hidden" if case["hidden"] else "public"
            verdict = "passed" if case["passed"] else "FAILED"
            lines.append(f"- {case['name']} ({kind}, {case['points']:g} point{'s' * (case['points'] != 1)}): {verdict}")
            if not case["passed"]:
                message = case["message"].replace("❌ Test case failed\n", "").strip()
                lines += ["", "  ```", *(f"  {line}" for line in message.splitlines()[-12:]), "  ```", ""]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_feedback(reports: list[GradeReport], folder: Path, root: Path) -> None:
    """Per submission: otter's results.json and a feedback file, named after its path under the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for report in reports:
        relative = report.submission.relative_to(root).as_posix()
        stem = relative.rsplit(".", 1)[0].replace("/", "__")
        (folder / f"{stem}.results.json").write_text(json.dumps(report.results, indent=1), encoding="utf-8")
        (folder / f"{stem}.feedback.md").write_text(feedback_text(report, relative), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("autograder", type=Path, help="the autograder zip from `python exercises/build.py`")
    parser.add_argument("submissions", type=Path, help="a folder of submitted notebooks (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, default=Path("grades.csv"), help="CSV file to write")
    parser.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1), help="submissions at once")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per submission")
    parser.add_argument("--deadline", help="ISO 8601 time (UTC unless it has a zone), e.g. 2027-03-01T23:59")
    parser.add_argument("--penalty-per-day", type=float, default=0.0, help="percent of the score lost per day late")
    parser.add_argument("--timestamps", type=Path, help="CSV submission,timestamp (default: the files' times)")
    parser.add_argument("--similarity", type=Path, help="also write a report of nearly identical answers here")
    args = parser.parse_args(argv)
    if not args.autograder.is_file():
        parser.error(f"no autograder zip at {args.autograder}: build it with `python exercises/build.py`")
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of submissions")
    if args.penalty_per_day and not args.deadline:
        parser.error("--penalty-per-day needs --deadline")
    submissions = find_submissions(args.submissions)
    if not submissions:
        parser.error(f"no .ipynb or .zip files under {args.submissions}")
    deadline = parse_time(args.deadline) if args.deadline else None
    timestamps = read_timestamps(args.timestamps) if args.timestamps else None

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        reports = list(pool.map(lambda s: grade_submission(s, args.autograder, timeout=args.timeout), submissions))
    root = args.submissions.resolve()
    late = [lateness(report, root, deadline, args.penalty_per_day, timestamps) for report in reports]
    write_csv(reports, args.output, root, late)
    feedback_dir = args.output.with_name(args.output.stem + "_feedback")
    write_feedback(reports, feedback_dir, root)
    for report in reports:
        name = report.submission.relative_to(root)
        status = f"  ({report.error.splitlines()[0]})" if report.error else ""
        flags = f"  [{len(report.flags)} flag{'s' * (len(report.flags) != 1)}]" if report.flags else ""
        print(f"{report.total:6g} / {report.total_possible:g}  {name}{status}{flags}")
    print(f"wrote {args.output} ({len(reports)} submissions) and {feedback_dir}/")
    if args.similarity:
        pairs = similarity.similar_pairs(submissions)
        similarity.write_report(pairs, args.similarity, root)
        print(f"wrote {args.similarity} ({len(pairs)} pairs above {similarity.THRESHOLD:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
