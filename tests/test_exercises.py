"""The exercises: otter builds them, the solutions earn full marks, the stubs earn nothing, the import guard holds.

Everything is built once per session into a temporary folder with `exercises/build.py` (the script behind
`make exercises`) and graded with `otter run`, the non-containerized grader that `exercises/grade.py` uses, exactly as
an instructor would grade a folder of submissions. The gradings run two at a time; each starts a Jupyter kernel.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

EXERCISES = Path(__file__).resolve().parents[1] / "exercises"
_spec = importlib.util.spec_from_file_location("minillama_exercises_build", EXERCISES / "build.py")
build = importlib.util.module_from_spec(_spec)  # exercises/build.py, the script behind `make exercises`
sys.modules[_spec.name] = build
_spec.loader.exec_module(build)
grade_submission = build.grade_submission
GradeReport = build.grading.GradeReport

SLUGS = [master.stem for master in build.exercise_sets()]


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _solution_cells(notebook: dict) -> list[dict]:
    return [cell for cell in notebook["cells"] if "otter_assign_solution_cell" in cell["metadata"].get("tags", [])]


def _defined_function(cell: dict) -> str:
    return re.search(r"^def (\w+)\(", _source(cell), flags=re.MULTILINE).group(1)


def _variant(solutions: Path, folder: Path, name: str, edit) -> Path:
    """A copy of the solutions notebook (a perfect submission) with `edit(notebook)` applied: a cheating student."""
    notebook = _read(solutions)
    edit(notebook)
    path = folder / name / solutions.name
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def _import_at_top(notebook: dict) -> None:
    cell = {"id": "cheat", "cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": "import minillama  # noqa: F401\n"}
    notebook["cells"].insert(2, cell)


# The last answer calls the book's package at run time (a lazy import inside the body).
LAZY_IMPORT = """\
_original_{fn} = {fn}


def {fn}(*args, **kwargs):
    import minillama  # noqa: F401

    return _original_{fn}(*args, **kwargs)
"""

# The second-to-last answer comes from another module (made on the fly here, standing in for any library).
FROM_ANOTHER_MODULE = """\
import types

_library = types.ModuleType("some_library")
_library.__dict__.update({{k: v for k, v in globals().items() if not k.startswith("_")}})
exec({source!r}, _library.__dict__)
{fn} = _library.{fn}
"""


def _borrow_last_two_answers(notebook: dict) -> None:
    """Cheat in every function of the last two questions; the honest answers before them must keep their points."""
    *_, second_to_last, last = _solution_cells(notebook)
    names = re.findall(r"^def (\w+)\(", _source(last), flags=re.MULTILINE)
    last["source"] = _source(last) + "".join("\n\n" + LAZY_IMPORT.format(fn=fn) for fn in names)
    code = _source(second_to_last)
    names = re.findall(r"^def (\w+)\(", code, flags=re.MULTILINE)
    second_to_last["source"] = code + "".join("\n\n" + FROM_ANOTHER_MODULE.format(fn=fn, source=code) for fn in names)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, build.Built]:
    return {item.slug: item for item in build.build(tmp_path_factory.mktemp("exercises_dist"))}


def _add_cell(notebook: dict, source: str, at: int | None = None) -> None:
    cell = {"id": f"cheat-{len(notebook['cells'])}", "cell_type": "code", "metadata": {}, "outputs": [],
            "execution_count": None, "source": source}
    notebook["cells"].insert(len(notebook["cells"]) if at is None else at, cell)


def _replace_function(notebook: dict, name: str, source: str) -> None:
    """Append `source` to the solution cell that defines `name` (the later definition wins)."""
    (cell,) = [c for c in _solution_cells(notebook) if _defined_function(c) == name]
    cell["source"] = _source(cell) + "\n\n" + source


# The cheats of issue 16, each written as a submission of set 01_autograd (numpy only). Each is a function of the
# notebook; CHEATS says which notebook it edits (the stubs or the solutions) and what grading must give.
PATCH_RUNNER = """\
from otter.test_files.exception_test import test_case

test_case.call_func = lambda self, global_environment: None
"""
PATCH_NUMPY = """\
import numpy as np

np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, dtype=bool)
"""
HIDDEN_IMPORT = """\
_honest_adamw_step = adamw_step


def adamw_step(*args, **kwargs):
    import importlib
    import sys

    name = "mini" + "llama"
    importlib.import_module(name + ".autograd")
    for key in [key for key in sys.modules if key.startswith(name)]:
        del sys.modules[key]
    return _honest_adamw_step(*args, **kwargs)
"""
TORCH_WRAPPER = """\
def mul_backward(a, b, grad_out):
    import torch

    ta = torch.tensor(np.asarray(a, dtype=float), requires_grad=True)
    tb = torch.tensor(np.asarray(b, dtype=float), requires_grad=True)
    (ta * tb).backward(torch.tensor(np.asarray(grad_out, dtype=float)))
    return ta.grad.numpy().astype(np.result_type(a)), tb.grad.numpy().astype(np.result_type(b))
"""
LOOP_FOREVER = """\
def adamw_step(*args, **kwargs):
    while True:
        pass
"""
HONEST_LATE_IMPORT = """\
# Done: compare with the book's package.
import minillama

print(minillama.__file__)
"""
FORGED_VERDICT = """\
import sys

sys.audit("minillama.guard.verify", 1)
"""


def _cheat_patch_runner(notebook):
    _add_cell(notebook, PATCH_RUNNER, at=2)


def _cheat_patch_numpy(notebook):
    _add_cell(notebook, PATCH_NUMPY, at=2)


def _cheat_hidden_import(notebook):
    _replace_function(notebook, "adamw_step", HIDDEN_IMPORT)


def _cheat_torch_wrapper(notebook):
    _replace_function(notebook, "mul_backward", TORCH_WRAPPER)


def _cheat_loops(notebook):
    _replace_function(notebook, "adamw_step", LOOP_FOREVER)
    _add_cell(notebook, "while True:\n    pass\n", at=4)  # a top-level loop: its cell is interrupted


def _honest_late_import(notebook):
    _add_cell(notebook, HONEST_LATE_IMPORT)


def _cheat_forged_verdict(notebook):
    _add_cell(notebook, FORGED_VERDICT, at=2)


CHEATS = {  # name: (edit, starts from, questions that must score 0 (None: every one), a flag the scan must raise)
    "patch runner": (_cheat_patch_runner, "student", None, "grader patching"),
    "patch numpy": (_cheat_patch_numpy, "student", None, "numpy patching"),
    "hidden import": (_cheat_hidden_import, "solutions", ["q6"], "importlib"),
    "torch wrapper": (_cheat_torch_wrapper, "solutions", ["q2"], "forbidden library"),
    "loops": (_cheat_loops, "solutions", ["q6"], None),
    "forged verdict": (_cheat_forged_verdict, "solutions", None, "sys internals"),
    "honest late import": (_honest_late_import, "solutions", [], None),
}


def _fast_autograder(autograder: Path, folder: Path, seconds: float) -> Path:
    """A copy of an autograder zip whose guard allows `seconds` per question and per cell."""
    fast = folder / autograder.name
    with zipfile.ZipFile(autograder) as source, zipfile.ZipFile(fast, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "otter_config.json":
                config = json.loads(data)
                policy = config["plugins"][0]["grading_guard.GradingGuard"]
                policy.update(question_timeout=seconds, cell_timeout=seconds)
                data = json.dumps(config).encode()
            target.writestr(name, data)
    return fast


@pytest.fixture(scope="session")
def grades(built, tmp_path_factory) -> dict[tuple[str, str], GradeReport]:
    """Every grading this module checks, run once, two at a time."""
    cheats = tmp_path_factory.mktemp("cheats")
    jobs: dict[tuple[str, str], tuple[Path, Path]] = {}
    for slug, item in built.items():
        jobs[slug, "solutions"] = item.solutions, item.autograder
        jobs[slug, "student"] = item.student, item.autograder
        borrowed = _variant(item.solutions, cheats, f"{slug}-borrowed", _borrow_last_two_answers)
        jobs[slug, "borrowed"] = borrowed, item.autograder
    first = built[SLUGS[0]]  # the same checks in every set: one is enough
    top = _variant(first.solutions, cheats, "import-at-top", _import_at_top)
    jobs[first.slug, "import at top"] = top, first.autograder
    fast = _fast_autograder(first.autograder, tmp_path_factory.mktemp("fast"), seconds=4.0)
    for name, (edit, start, _, _) in CHEATS.items():
        notebook = first.student if start == "student" else first.solutions
        variant = _variant(notebook, cheats, name.replace(" ", "-"), edit)
        jobs[first.slug, name] = variant, fast if name == "loops" else first.autograder
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = pool.map(lambda job: grade_submission(*job, timeout=600), jobs.values())
        return dict(zip(jobs, reports, strict=True))


def test_every_exercise_set_is_found():
    assert SLUGS, "no master notebooks under exercises/NN_slug/NN_slug.ipynb"
    assert {"01_autograd", "02_tokenization"} <= set(SLUGS)


@pytest.mark.parametrize("slug", SLUGS)
def test_build_lays_out_student_and_autograder_files(built, slug):
    item = built[slug]
    for path in (item.student, item.student_zip, item.autograder, item.solutions):
        assert path.is_file(), f"{path} was not built"
    with zipfile.ZipFile(item.student_zip) as archive:
        names = set(archive.namelist())
    assert f"{slug}.ipynb" in names and any(re.fullmatch(r"tests/q\d+\.py", n) for n in names), sorted(names)
    with zipfile.ZipFile(item.autograder) as archive:
        assert any(re.fullmatch(r"tests/q\d+\.py", n) for n in archive.namelist()), "the autograder has no tests"
    setup = _source(_read(item.student)["cells"][1])
    assert "otter.Notebook" in setup and f"{slug}.zip" in setup, "the student notebook lacks its setup cell"


@pytest.mark.parametrize("slug", SLUGS)
def test_student_version_has_no_solutions_and_no_hidden_tests(built, slug):
    item = built[slug]
    master = _read(item.master)
    student_text = "\n".join(_source(cell) for cell in _read(item.student)["cells"])
    solution_lines = set()
    for cell in master["cells"]:
        match = re.search(r"# BEGIN SOLUTION NO PROMPT\n(.*?)# END SOLUTION", _source(cell), flags=re.DOTALL)
        if match:
            solution_lines |= {line.strip() for line in match.group(1).splitlines() if len(line.strip()) > 12}
    assert solution_lines, "the master notebook has no solution blocks"
    leaked = sorted(line for line in solution_lines if line in student_text)
    assert not leaked, f"solution lines in the student notebook: {leaked[:5]}"

    student_tests = "\n".join(p.read_text() for p in sorted((item.student.parent / "tests").glob("*.py")))
    all_tests = "\n".join(p.read_text() for p in sorted((item.solutions.parent / "tests").glob("*.py")))
    hidden = re.findall(r"hidden=True\)\ndef (\w+)\(", all_tests)
    assert hidden, "the exercise set has no hidden tests"
    assert not [name for name in hidden if name in student_tests], "hidden tests were given to students"
    assert "hidden=False" in student_tests, "students need public tests for grader.check"


@pytest.mark.parametrize("slug", SLUGS)
def test_master_solutions_earn_full_marks(grades, slug):
    report = grades[slug, "solutions"]
    assert not report.error, report.error
    assert report.total_possible > 0
    assert report.scores == report.possible, f"the solutions lost points: {report.scores} of {report.possible}"


@pytest.mark.parametrize("slug", SLUGS)
def test_student_stubs_earn_nothing(grades, slug):
    report = grades[slug, "student"]
    assert not report.error, report.error
    assert report.total_possible > 0
    assert report.total == 0, f"an unanswered notebook earned points: {report.scores}"


@pytest.mark.parametrize("slug", SLUGS)
def test_borrowed_functions_lose_their_questions(grades, slug):
    report = grades[slug, "borrowed"]
    assert not report.error, report.error
    *honest, second_to_last, last = sorted(report.possible, key=lambda name: int(name[1:]))  # q1, q2, ...
    assert report.scores[last] == 0, f"an answer importing minillama at run time earned {report.scores[last]}"
    assert report.scores[second_to_last] == 0, f"an answer from another module earned {report.scores[second_to_last]}"
    honest_scores = {q: report.scores[q] for q in honest}
    assert honest_scores == {q: report.possible[q] for q in honest}, f"honest answers lost points: {honest_scores}"


def test_importing_minillama_at_the_top_is_blocked_and_flagged(grades):
    """The import fails in the grading kernel (so it cannot help any answer) and the scan flags it."""
    report = grades[SLUGS[0], "import at top"]
    assert not report.error, report.error
    assert report.scores == report.possible, f"the honest answers lost points: {report.scores}"
    assert [f.kind for f in report.flags] == ["forbidden library"], [str(f) for f in report.findings]


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_cheats_score_nothing_on_what_they_touch_and_are_flagged(grades, cheat):
    _, _, zeroed, flag = CHEATS[cheat]
    report = grades[SLUGS[0], cheat]
    assert not report.error, report.error
    zeroed = list(report.possible) if zeroed is None else zeroed
    assert {q: report.scores[q] for q in zeroed} == dict.fromkeys(zeroed, 0.0), report.scores
    honest = {q: report.scores[q] for q in report.possible if q not in zeroed}
    assert honest == {q: report.possible[q] for q in honest}, f"honest answers lost points: {report.scores}"
    kinds = {finding.kind for finding in report.flags}
    if flag is not None:
        assert flag in kinds, [str(f) for f in report.findings]
    if cheat == "honest late import":
        assert not report.flags, [str(f) for f in report.flags]
        assert [f.kind for f in report.findings] == ["late import"], [str(f) for f in report.findings]
        assert not report.integrity
    if zeroed == list(report.possible) and cheat != "patch runner":
        assert report.integrity, "the guard did not report the tampering"


def test_patched_runner_is_named_by_the_guard(grades):
    report = grades[SLUGS[0], "patch runner"]
    assert "test_case.call_func" in report.integrity, report.integrity
    assert "numpy.allclose" in grades[SLUGS[0], "patch numpy"].integrity


def test_feedback_names_every_test_case(grades, tmp_path):
    report = grades[SLUGS[0], "torch wrapper"]
    cases = {case["name"]: case for q in report.feedback["questions"] for case in q["test_cases"]}
    assert all(not name.startswith("q") for name in cases), sorted(cases)  # named, not "q1 - 1"
    failed = [name for name, case in cases.items() if not case["passed"]]
    assert failed and all(name.startswith("test_mul_backward") for name in failed), failed
    assert any("blocked" in cases[name]["message"] for name in failed), [cases[n]["message"] for n in failed]
    grading = build.grading
    root = report.submission.parent.parent
    grading.write_feedback([report], tmp_path, root)
    (text,) = [p.read_text() for p in tmp_path.glob("*.feedback.md")]
    assert "test_mul_backward_by_hand (public, 1 point): FAILED" in text, text
    assert len(list(tmp_path.glob("*.results.json"))) == 1


def test_student_notebook_finds_its_tests_in_the_uploaded_zip(built, tmp_path):
    """Colab: the notebook is opened alone and the zip uploaded beside it; the setup cell unpacks the tests."""
    item = built[SLUGS[-1]]
    for path in (item.student, item.student_zip):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--allow-errors",
               "--output", "run.ipynb", item.student.name]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    outputs = {
        _source(cell): json.dumps(cell["outputs"])
        for cell in _read(tmp_path / "run.ipynb")["cells"]
        if cell["cell_type"] == "code"
    }
    assert (tmp_path / "tests" / "q1.py").is_file(), "the setup cell did not unpack the tests"
    assert "NotImplementedError" in outputs['grader.check("q1")'], outputs['grader.check("q1")']


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MINILLAMA_TEST_FRESH_VENV"),
                    reason="downloads packages: set MINILLAMA_TEST_FRESH_VENV=1 (needs a package index)")
def test_autograder_installs_and_grades_in_a_fresh_venv(built, tmp_path):
    """Gradescope's recipe: an empty venv, the zip's requirements.txt and nothing else, then grade with it."""
    item = built[SLUGS[0]]
    with zipfile.ZipFile(item.autograder) as archive:
        (tmp_path / "requirements.txt").write_bytes(archive.read("requirements.txt"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = [python, "-m", "pip", "install", "-q", "-r", str(tmp_path / "requirements.txt")]
    subprocess.run(install, check=True, timeout=1800, env=env, capture_output=True)
    probe = subprocess.run([python, "-c", "import minillama"], env=env, capture_output=True, cwd=tmp_path)
    assert probe.returncode != 0, "the fresh environment must not see the repository's package"
    submissions = tmp_path / "submissions"
    for name, notebook in (("solutions", item.solutions), ("stubs", item.student)):
        (submissions / name).mkdir(parents=True)
        (submissions / name / notebook.name).write_bytes(notebook.read_bytes())
    grade = [python, str(EXERCISES / "grade.py"), str(item.autograder), str(submissions), "-o", "grades.csv", "-j", "1"]
    subprocess.run(grade, check=True, timeout=900, env=env, cwd=tmp_path, capture_output=True)
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = {row["submission"].split("/")[0]: row for row in csv.DictReader(f)}
    assert rows["solutions"]["total"] == rows["solutions"]["possible"] != "0", rows["solutions"]
    assert rows["stubs"]["total"] == "0" and not rows["solutions"]["flags"], rows
    assert (tmp_path / "grades_feedback" / f"solutions__{SLUGS[0]}.feedback.md").is_file()


def _master_solutions(slug: str) -> dict:
    """The namespace of a master notebook's solution cells, executed here (no kernel)."""
    namespace: dict = {}
    for cell in _read(EXERCISES / slug / f"{slug}.ipynb")["cells"]:
        if cell["cell_type"] == "code" and ("# BEGIN SOLUTION" in _source(cell) or _source(cell).startswith("import")):
            exec(_source(cell), namespace)
    return namespace


def test_bpe_exercise_learns_the_merges_of_the_package():
    """The exercise's tie rule is the one `minillama.tokenizer` uses, as its statement says."""
    from minillama.tokenizer import BPETokenizer

    train_bpe = _master_solutions("02_tokenization")["train_bpe"]
    text = "low lower lowest newer wider, new newest; the the the. 1234 56 naïve café 東京 Zürich!\n\n  end"
    pattern = r" ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+(?!\S)|\s+"
    merges = train_bpe(re.findall(pattern, text), 256 + 40)
    token_bytes = {i: bytes([i]) for i in range(256)}
    for i, (first, second) in enumerate(merges):
        token_bytes[256 + i] = token_bytes[first] + token_bytes[second]
    package = BPETokenizer().train(text, 256 + 40, pattern=pattern, min_frequency=1)
    assert [(token_bytes[a], token_bytes[b]) for a, b in merges] == list(package.merges)


def test_grade_script_writes_one_row_per_submission(tmp_path):
    """exercises/grade.py's CSV, from reports made by hand (no grading here): scores, lateness, flags, notes."""
    grading = build.grading
    folder = tmp_path / "submissions"
    for student, source in (("alice", "def f():\n    return 1\n"), ("bob", "import minillama\n")):
        (folder / student).mkdir(parents=True)
        notebook = {"cells": [{"cell_type": "code", "source": source, "metadata": {}, "outputs": []}]}
        (folder / student / "set.ipynb").write_text(json.dumps(notebook))
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "set-checkpoint.ipynb").write_text("{}")
    found = grading.find_submissions(folder)
    assert [path.parent.name for path in found] == ["alice", "bob"], found
    reports = [
        grading.GradeReport(found[0], scores={"q1": 2.0, "q2": 1.5}, possible={"q1": 2.0, "q2": 3.0}),
        grading.GradeReport(found[1], error="otter run failed (exit 1): boom",
                            findings=grading.scan.scan_notebook(found[1], ["minillama"])),
    ]
    timestamps = tmp_path / "times.csv"
    timestamps.write_text("submission,timestamp\nalice/set.ipynb,2027-03-02T00:00:01Z\nset.ipynb,2027-03-01T12:00\n")
    times = grading.read_timestamps(timestamps)
    deadline = grading.parse_time("2027-03-01T23:59:59")
    late = [grading.lateness(r, folder, deadline, 10.0, times) for r in reports]
    assert [(item.days, item.factor) for item in late] == [(1, 0.9), (0, 1.0)]
    grading.write_csv(reports, tmp_path / "grades.csv", folder, late)
    rows = (tmp_path / "grades.csv").read_text().splitlines()
    assert rows[0] == "submission,q1 (/2),q2 (/3),total,possible,submitted,days late,late penalty,final,flags,note"
    assert rows[1] == "alice/set.ipynb,2,1.5,3.5,5,2027-03-02T00:00:01+00:00,1,0.35,3.15,,"
    assert rows[2] == (
        'bob/set.ipynb,0,0,0,5,2027-03-01T12:00:00+00:00,0,0,0,'
        '"forbidden library: imports minillama (blocked) (cell 0, line 1)",otter run failed (exit 1): boom'
    )


def test_scan_reports_cheats_and_leaves_honest_code_alone():
    scan = build.grading.scan
    honest = ["import numpy as np", "def f(x):\n    return np.maximum(x, 0)", 'grader.check("q1")',
              "%timeit f(np.ones(3))", "import minillama\nprint(minillama.__file__)"]
    findings = scan.scan_source(honest, ["minillama", "torch"])
    assert [f.kind for f in findings] == ["late import"] and not any(f.flag for f in findings), findings
    late_but_used = ["def f(x):\n    return minillama.f(x)", 'grader.check("q1")', "import minillama"]
    assert [f.kind for f in scan.scan_source(late_but_used, ["minillama"]) if f.flag] == ["forbidden library"]
    cheats = {
        "grader patching": "from otter.execute import Checker\nChecker.check = None",
        "numpy patching": "setattr(np, 'allclose', lambda *a, **k: True)",
        "sys internals": "import sys\nsys.modules.pop('minillama')",
        "inspect": "import inspect",
        "exec/eval": "exec('x = 1')",
        "importlib": "__import__('mini' + 'llama')",
        "forbidden library": "def f(x):\n    import torch\n    return torch.tensor(x)",
        "kernel internals": "!python -c 'import minillama'",
    }
    for kind, source in cheats.items():
        kinds = {f.kind for f in scan.scan_source([source, 'grader.check("q1")'], ["minillama", "torch"]) if f.flag}
        assert kind in kinds, (kind, source, kinds)


def test_similarity_sees_through_renaming(tmp_path):
    similarity = build.grading.similarity
    original = ('def relu(x):\n    """Doc."""\n    out = np.maximum(x, 0.0)\n'
                "    total = out.sum()\n    return out / total\n")
    renamed = "def relu(v):\n    # mine\n    result = np.maximum(v, 0.0)\n    s = result.sum()\n    return result / s\n"
    other = "def relu(x):\n    return np.where(x > 0, x, 0.0) * np.ones_like(x) + np.zeros(x.shape)\n"
    stub = "def relu(x):\n    raise NotImplementedError('write relu')\n"
    paths = []
    for name, source in (("a", original), ("b", renamed), ("c", other), ("d", stub)):
        path = tmp_path / f"{name}.ipynb"
        path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": source, "metadata": {}}]}))
        paths.append(path)
    pairs = similarity.similar_pairs(paths)
    assert [(a.stem, b.stem, round(score, 6)) for a, b, score, _ in pairs] == [("a", "b", 1.0)], pairs
    similarity.write_report(pairs, tmp_path / "similarity.csv", tmp_path)
    assert (tmp_path / "similarity.csv").read_text().splitlines()[1] == "a.ipynb,b.ipynb,1.000,relu"


def test_reseed_changes_only_the_hidden_tests_seeds(tmp_path):
    """exercises/reseed.py: a private copy's hidden tests draw new data; public tests and solutions are untouched."""
    spec = importlib.util.spec_from_file_location("minillama_exercises_reseed", EXERCISES / "reseed.py")
    reseed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reseed)
    master, count = reseed.reseed_set(SLUGS[0], tmp_path, "a secret")
    assert count > 0
    before, after = _read(EXERCISES / SLUGS[0] / f"{SLUGS[0]}.ipynb")["cells"], _read(master)["cells"]
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if _source(a) != _source(b)]
    assert changed and all(reseed.is_hidden_test(_source(before[i])) for i in changed), changed
    assert reseed.reseed_set(SLUGS[0], tmp_path / "again", "a secret")[1] == count
    assert _read(tmp_path / "again" / SLUGS[0] / master.name)["cells"] == after, "the same secret, the same seeds"
