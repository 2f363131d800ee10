"""Build the student notebooks and the autograders of every exercise set with otter-grader.

Each folder `exercises/NN_slug/` holds one master notebook, `NN_slug.ipynb`, in otter's assign format: statements,
solutions, public and hidden tests, and points. `otter assign` turns it into

    exercises/_dist/student/NN_slug/NN_slug.ipynb     the notebook students get (stubs, public tests only)
    exercises/_dist/student/NN_slug/tests/            the public tests that `grader.check("q1")` runs
    exercises/_dist/student/NN_slug.zip               the two above in one file (upload it to Colab)
    exercises/_dist/autograder/NN_slug/NN_slug-autograder.zip   what `otter run` / `exercises/grade.py` grade with
    exercises/_dist/autograder/NN_slug/NN_slug.ipynb  the solutions, as a student notebook (keep it private)
    exercises/_dist/autograder/NN_slug/tests/         public and hidden tests

`exercises/_dist/` is ignored by git: no student version, and no solution outside the master notebooks, is committed.

    python exercises/build.py               # build every exercise set
    python exercises/build.py --check       # ... then grade the solutions (full marks) and the stubs (zero)
    python exercises/build.py 01_autograd   # only some sets
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

EXERCISES = Path(__file__).resolve().parent
DIST = EXERCISES / "_dist"


def _load_sibling(name: str):
    """Import exercises/<name>.py under a unique module name (these scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"minillama_exercises_{name}", EXERCISES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


grading = _load_sibling("grade")
grade_submission = grading.grade_submission
guard = grading.guard  # exercises/grading_guard.py, the otter plugin shipped in every autograder zip

PUBLIC_SUCCESS = "public test passed (hidden tests run at grading)"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

SETUP_CELL = grading.scan.SETUP_CELL  # the locked first code cell of every student notebook


@dataclass
class Built:
    """The files built for one exercise set."""

    slug: str  # "01_autograd"
    master: Path  # exercises/01_autograd/01_autograd.ipynb
    student: Path  # <out>/student/01_autograd/01_autograd.ipynb
    student_zip: Path  # <out>/student/01_autograd.zip
    autograder: Path  # <out>/autograder/01_autograd/01_autograd-autograder.zip
    solutions: Path  # <out>/autograder/01_autograd/01_autograd.ipynb


def exercise_sets(names: list[str] | None = None) -> list[Path]:
    """The master notebooks `exercises/NN_slug/NN_slug.ipynb`, in order; `names` selects some by slug."""
    masters = sorted(path for path in EXERCISES.glob("[0-9][0-9]_*/*.ipynb") if path.stem == path.parent.name)
    if names:
        unknown = set(names) - {path.stem for path in masters}
        if unknown:
            raise SystemExit(f"no exercise set named {', '.join(sorted(unknown))}; have {[p.stem for p in masters]}")
        masters = [path for path in masters if path.stem in names]
    return masters


def add_setup_cell(notebook_path: Path, slug: str) -> None:
    """Insert the locked setup cell after the notebook's first (title) cell; drop the master's execution times."""
    notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    for existing in notebook["cells"]:
        existing.get("metadata", {}).pop("execution", None)
    cell = {
        "id": "otter-setup",
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"deletable": False, "editable": False},
        "outputs": [],
        "source": SETUP_CELL.format(slug=slug).splitlines(keepends=True),
    }
    notebook["cells"].insert(1, cell)
    notebook_path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def name_test_cases(source: str) -> str:
    """Name each test case after its test function; public ones say that the hidden tests come at grading."""

    def named(match: re.Match) -> str:
        points, hidden, function = match.group(1), match.group(2), match.group(3)
        message = "" if hidden == "True" else f", success_message={PUBLIC_SUCCESS!r}"
        return f"@test_case(name={function!r}, points={points}, hidden={hidden}{message})\ndef {function}("

    return re.sub(r"@test_case\(points=([^,]+), hidden=(True|False)\)\ndef (\w+)\(", named, source)


def pinned_requirements(libraries: list[str]) -> list[str]:
    """pip lines for the grading environment: otter and numpy, plus the set's libraries, at this machine's versions.

    A local torch built for CPU (`2.13.0+cpu`) is pinned to the same build from PyTorch's CPU index, so that an
    autograder never pulls the CUDA wheels and grades with the library versions used here.
    """
    lines = []
    for name in ["otter-grader[grading]", "numpy", *libraries]:
        version = importlib.metadata.version(name.split("[")[0])
        lines.append(f"{name}=={version}")
        if name == "torch" and "+cpu" in version:
            lines.insert(0, f"--extra-index-url {TORCH_CPU_INDEX}")
    return lines


ENVIRONMENT_YML = """\
name: otter-env
channels:
  - conda-forge
dependencies:
  - python={python}
  - pip
  - jupyter_server
  - pip:
{pip}
"""


def finish_autograder(zip_path: Path, policy: dict) -> None:
    """Add the guard plugin, named test cases, `show_hidden` and pinned requirements to otter's autograder zip."""
    with zipfile.ZipFile(zip_path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    for name in files:
        if name.startswith("tests/") and name.endswith(".py"):
            files[name] = name_test_cases(files[name].decode("utf-8")).encode("utf-8")
    config = json.loads(files["otter_config.json"])
    plugin_config = {key: policy[key] for key in ("blocked", "allow_processes", "question_timeout", "cell_timeout")}
    config.update(show_hidden=True, plugins=[{guard.PLUGIN_NAME: plugin_config}])
    files["otter_config.json"] = json.dumps(config, indent=2).encode("utf-8")
    files["grading_guard.py"] = (EXERCISES / "grading_guard.py").read_bytes()
    requirements = pinned_requirements(policy["libraries"])
    files["requirements.txt"] = ("\n".join(requirements) + "\n").encode("utf-8")
    python = ".".join(map(str, sys.version_info[:2]))
    pip = "\n".join(f"      - {line}" for line in requirements)
    files["environment.yml"] = ENVIRONMENT_YML.format(python=python, pip=pip).encode("utf-8")
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)


def build_one(master: Path, out: Path) -> Built:
    """Run `otter assign` on one master notebook and lay its output out under `out`."""
    slug = master.stem
    with tempfile.TemporaryDirectory(prefix=f"otter-assign-{slug}-") as tmp:
        result = Path(tmp) / "dist"
        command = [sys.executable, "-m", "otter", "assign", "--no-pdfs", "--no-run-tests", str(master), str(result)]
        run = subprocess.run(command, capture_output=True, text=True, cwd=master.parent)
        if run.returncode != 0:
            raise RuntimeError(f"otter assign failed for {master}:\n{run.stdout}\n{run.stderr}")
        (zip_made,) = (result / "autograder").glob(f"{slug}-autograder_*.zip")  # otter stamps the time in the name

        student_dir, autograder_dir = out / "student" / slug, out / "autograder" / slug
        for folder in (student_dir, autograder_dir):
            shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(result / "student", student_dir)
        autograder_dir.mkdir(parents=True)
        shutil.copy2(zip_made, autograder_dir / f"{slug}-autograder.zip")
        shutil.copy2(result / "autograder" / f"{slug}.ipynb", autograder_dir / f"{slug}.ipynb")
        shutil.copytree(result / "autograder" / "tests", autograder_dir / "tests")
    for test_file in [*(student_dir / "tests").glob("*.py"), *(autograder_dir / "tests").glob("*.py")]:
        test_file.write_text(name_test_cases(test_file.read_text(encoding="utf-8")), encoding="utf-8")
    finish_autograder(autograder_dir / f"{slug}-autograder.zip", guard.policy_of(json.loads(master.read_text())))

    built = Built(
        slug=slug,
        master=master,
        student=student_dir / f"{slug}.ipynb",
        student_zip=out / "student" / f"{slug}.zip",
        autograder=autograder_dir / f"{slug}-autograder.zip",
        solutions=autograder_dir / f"{slug}.ipynb",
    )
    for notebook in (built.student, built.solutions):
        add_setup_cell(notebook, slug)
    with zipfile.ZipFile(built.student_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(student_dir.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(student_dir).as_posix())
    return built


def build(out: Path = DIST, names: list[str] | None = None) -> list[Built]:
    """Build every exercise set (or those named) into `out`."""
    return [build_one(master, out) for master in exercise_sets(names)]


def check(built: list[Built]) -> bool:
    """Grade each set's solutions (they must score full marks) and its student stubs (they must score 0)."""
    ok = True
    for item in built:
        for label, notebook, want_full in (("solutions", item.solutions, True), ("student stubs", item.student, False)):
            report = grade_submission(notebook, item.autograder)
            passed = not report.error and (
                report.total == report.total_possible > 0 if want_full else report.total == 0 < report.total_possible
            )
            ok &= passed
            verdict = "ok" if passed else "FAILED"
            print(f"{item.slug}: {label} score {report.total:g} / {report.total_possible:g}  {verdict} {report.error}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build student notebooks and autograders of the exercises (otter).")
    parser.add_argument("names", nargs="*", help="exercise sets to build, e.g. 01_autograd (default: all)")
    parser.add_argument("--out", type=Path, default=DIST, help=f"output folder (default: {DIST})")
    parser.add_argument("--check", action="store_true", help="grade solutions (full marks) and stubs (zero)")
    args = parser.parse_args(argv)
    built = build(args.out, args.names)
    for item in built:
        print(f"{item.slug}: {item.student_zip} (students), {item.autograder} (grading)")
    if args.check and not check(built):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
