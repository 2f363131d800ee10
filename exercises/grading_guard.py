"""An otter plugin that grades a submission in a guarded kernel: blocked imports, genuine functions, timeouts.

otter runs the tests inside the student's own kernel, so a notebook could patch the test runner or `np.allclose`, or
import the book's finished code. Before the student's first cell this plugin installs a Python audit hook (PEP 578:
it cannot be removed by the code that follows) that refuses to import or open the blocked packages (`minillama`,
`transformers`, `torch` in the numpy-only sets) however the import is spelled, and that snapshots numpy, math, the
builtins and otter's test runner. After the student's last cell, grader cells check the snapshot (phase 1), run
each question's tests with its own timeout, and check again (phase 2). Each check prints a verdict with a secret
token that reaches the kernel only through an environment variable the hook removes; `after_grading` (outside the
kernel) zeroes every score unless both verdicts are present and clean. A cell that runs too long is interrupted.
build.py ships this file in every autograder zip and names it in `otter_config.json`; the policy of a set (what is
blocked, whether processes may start, the timeouts) comes from its master notebook (see `POLICY_DEFAULTS`).
"""

from __future__ import annotations

import json
import os
import secrets

try:  # the plugin base class; the cell templates below are usable without otter
    from otter.plugins import AbstractOtterPlugin
except ImportError:  # pragma: no cover - otter is a dependency of grading
    AbstractOtterPlugin = object

PLUGIN_NAME = "grading_guard.GradingGuard"
TOKEN_VARIABLE = "MINILLAMA_GUARD_TOKEN"
FEEDBACK_VARIABLE = "MINILLAMA_GRADE_FEEDBACK"  # grade.py: where to write every test case's result as JSON
VERDICT_PREFIX = "minillama-guard"

# A set's master notebook may override these in its metadata, under "minillama_grading".
POLICY_DEFAULTS = {
    "blocked": ["minillama", "transformers"],  # packages student code may not import or read
    "flagged": [],  # libraries grade.py reports when a submission imports them (not blocked)
    "libraries": [],  # pip names the set needs besides numpy and otter, pinned in the autograder's requirements
    "allow_processes": False,  # whether code in the kernel may start processes (tests of 08_09 launch ranks)
    "question_timeout": 120,  # seconds for all the tests of one question
    "cell_timeout": 120,  # seconds for one cell of the submission
}

GUARD_CELL = r'''
def _minillama_guard(blocked, allow_processes, cell_timeout, token_variable, prefix):
    import builtins, importlib.util, math, os, re, signal, sys
    import numpy, numpy.testing
    import otter, otter.execute, otter.execute.checker, otter.test_files
    import otter.test_files.abstract_test, otter.test_files.exception_test

    token = os.environ.pop(token_variable, "")
    roots = []
    for name in blocked:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            places = list(spec.submodule_search_locations or []) or [spec.origin or ""]
            roots += [os.path.realpath(place) for place in places if place]
    environ = re.compile(r"/proc/(self|thread-self|\d+)/(task/\d+/)?environ")
    process_events = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                      "os.forkpty", "pty.spawn"}
    modules = [builtins, math, numpy, numpy.testing, otter.execute, otter.execute.checker, otter.test_files,
               otter.test_files.abstract_test, otter.test_files.exception_test]

    def code_of(value):
        value = getattr(value, "__func__", value)
        return getattr(value, "__code__", None), getattr(value, "__defaults__", None)

    swapped = {("builtins", name) for name in ("input", "raw_input", "getpass", "exit", "quit")}  # by ipykernel

    def is_code(value):  # functions, methods, classes: what the tests call (not data, not submodules)
        return (callable(value) or hasattr(value, "__func__")) and not isinstance(value, type(os))

    def snapshot():
        seen = {}
        for module in modules:
            for key, value in list(vars(module).items()):
                if not is_code(value) or (module.__name__, key) in swapped:
                    continue
                seen[module.__name__, key] = (value, code_of(value))
                if isinstance(value, type) and getattr(value, "__module__", "").startswith("otter"):
                    for attr, member in list(vars(value).items()):
                        if is_code(member):
                            seen[f"{module.__name__}.{key}", attr] = (member, code_of(member))
        return seen

    genuine = snapshot()
    write, flush = sys.stdout.write, sys.stdout.flush
    done = set()

    def changed():
        now = snapshot()
        found = [f"{owner}.{name}" for (owner, name), (value, code) in genuine.items()
                 if (owner, name) not in now or now[owner, name][0] is not value
                 or any(a is not b for a, b in zip(now[owner, name][1], code))]
        found += [f"{owner}.{name} (added)" for (owner, name) in now.keys() - genuine.keys()
                  if owner.startswith("otter") or owner in ("builtins", "numpy", "numpy.testing", "math")]
        return sorted(found)

    def refuse(what):
        return f"{what} is blocked while grading this exercise set (blocked: {', '.join(blocked)})"

    def hook(event, args):
        if event == "import":
            if args[0].partition(".")[0] in blocked:
                raise ModuleNotFoundError(refuse(f"importing {args[0]}"))
        elif event == "open":
            path = args[0]
            if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__"):
                path = os.path.realpath(os.fsdecode(path))
                if environ.fullmatch(path) or any(path == r or path.startswith(r + os.sep) for r in roots):
                    raise PermissionError(refuse(f"reading {path}"))
        elif event in process_events and not allow_processes:
            raise PermissionError(f"{event}: starting processes is not allowed while grading this set")
        elif event == "minillama.guard.verify":
            phase = args[0]
            if phase in done:  # each phase is checked once, from its grader cell
                return
            done.add(phase)
            found = changed()
            verdict = "clean" if not found else "tampered: " + ", ".join(found[:12])
            write(f"{prefix} {phase} {token} {verdict}\n")
            flush()

    sys.addaudithook(hook)

    if cell_timeout:
        def too_long(signum, frame):
            signal.setitimer(signal.ITIMER_REAL, 1.0)  # a cell catching the error gets 1 s more each time
            raise TimeoutError(f"this cell ran longer than {cell_timeout} s and was interrupted by the grader")

        def arm(*args):
            signal.signal(signal.SIGALRM, too_long)
            signal.setitimer(signal.ITIMER_REAL, cell_timeout)

        def disarm(*args):
            signal.setitimer(signal.ITIMER_REAL, 0)

        from IPython import get_ipython

        shell = get_ipython()
        shell.events.register("pre_run_cell", arm)
        shell.events.register("post_run_cell", disarm)


_minillama_guard(__ARGUMENTS__)
del _minillama_guard
'''

VERIFY_CELL = 'import sys\nsys.audit("minillama.guard.verify", {phase})\n'

TESTS_CELL = r'''
def _minillama_run_tests(timeout):
    import glob, signal
    from otter.execute import Checker
    from otter.nbmeta_config import NBMetadataConfig

    def too_long(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, 1.0)  # the question's remaining test cases get 1 s each
        raise TimeoutError(f"the tests of this question ran longer than {timeout} s")

    Checker.clear_results()  # results of the notebook's own grader.check cells do not count
    for path in sorted(glob.glob("./tests/*.py")):
        signal.signal(signal.SIGALRM, too_long)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            Checker.check(path, NBMetadataConfig(), global_env=globals())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)


_minillama_run_tests(__ARGUMENTS__)
'''


def policy_of(notebook: dict) -> dict:
    """A set's grading policy: POLICY_DEFAULTS updated with the master notebook's metadata["minillama_grading"]."""
    policy = dict(POLICY_DEFAULTS)
    declared = notebook.get("metadata", {}).get("minillama_grading", {})
    unknown = set(declared) - set(POLICY_DEFAULTS)
    if unknown:
        known = list(POLICY_DEFAULTS)
        raise ValueError(f"unknown keys in metadata.minillama_grading: {sorted(unknown)}; known {known}")
    policy.update(declared)
    policy["blocked"] = sorted(set(policy["blocked"]) | {"minillama"})  # the book's package is always blocked
    return policy


def _cell(source: str, cell_id: str):
    import nbformat

    cell = nbformat.v4.new_code_cell(source.strip() + "\n")
    cell["id"] = cell_id
    cell["metadata"]["minillama_guard"] = cell_id
    return cell


def verdicts(notebook) -> dict[int, str]:
    """The verdict lines printed by the grader's check cells of an executed notebook: phase -> 'token verdict'."""
    found: dict[int, str] = {}
    for cell in notebook["cells"]:
        if not str(cell.get("metadata", {}).get("minillama_guard", "")).startswith("minillama-guard-verify-"):
            continue
        phase = int(cell["metadata"]["minillama_guard"].rsplit("-", 1)[1])
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                for line in "".join(output.get("text", "")).splitlines():
                    if line.startswith(f"{VERDICT_PREFIX} {phase} ") and phase not in found:
                        found[phase] = line.split(" ", 2)[2]
    return found


class GradingGuard(AbstractOtterPlugin):
    """The otter plugin: guard cells in, verdicts checked, every test case's result written out."""

    def __init__(self, submission_path, submission_metadata, plugin_config):
        super().__init__(submission_path, submission_metadata, plugin_config)
        self.policy = {**POLICY_DEFAULTS, **(plugin_config or {})}
        self.token = secrets.token_hex(16)
        self.problem = ""

    def before_execution(self, submission):
        if isinstance(submission, str):  # a .py submission: grade it as it is
            return submission
        os.environ[TOKEN_VARIABLE] = self.token  # the kernel inherits it; the guard removes it
        policy = self.policy
        arguments = (list(policy["blocked"]), bool(policy["allow_processes"]), float(policy["cell_timeout"]),
                     TOKEN_VARIABLE, VERDICT_PREFIX)
        guard = GUARD_CELL.replace("__ARGUMENTS__", repr(arguments)[1:-1])
        submission.cells.insert(0, _cell(guard, "minillama-guard-install"))
        submission.cells.append(_cell(VERIFY_CELL.format(phase=1), "minillama-guard-verify-1"))
        tests = TESTS_CELL.replace("__ARGUMENTS__", repr(float(policy["question_timeout"])))
        submission.cells.append(_cell(tests, "minillama-guard-tests"))
        submission.cells.append(_cell(VERIFY_CELL.format(phase=2), "minillama-guard-verify-2"))
        return submission

    def after_grading(self, results):
        notebook = getattr(results, "notebook", None)
        if notebook is None:
            self.problem = "the executed notebook is missing"
        else:
            found = verdicts(notebook)
            for phase in (1, 2):
                verdict = found.get(phase)
                if verdict is None:
                    self.problem = f"the grader's check {phase} did not report (its output was suppressed)"
                elif not verdict.startswith(f"{self.token} "):
                    self.problem = f"the grader's check {phase} reported a forged verdict"
                elif verdict != f"{self.token} clean":
                    self.problem = f"the grader's check {phase} found patched functions: {verdict.split(' ', 2)[2]}"
                if self.problem:
                    break
        if self.problem:
            for name in results.test_files:
                results.update_score(name, 0)
            results.set_output(f"Grading integrity check failed, every score set to 0: {self.problem}.")
        destination = os.environ.get(FEEDBACK_VARIABLE)
        if destination:
            with open(destination, "w", encoding="utf-8") as f:
                json.dump(self._feedback(results), f, indent=1)

    def _feedback(self, results) -> dict:
        questions = []
        for name in results.test_files:
            test_file = results.get_result(name)
            cases = [
                {
                    "name": result.test_case.name,
                    "hidden": bool(result.test_case.hidden),
                    "points": result.test_case.points,
                    "passed": bool(result.passed),
                    "message": (result.message or "").strip(),
                }
                for result in test_file.test_case_results
            ]
            questions.append({"name": name, "score": test_file.score, "possible": test_file.possible,
                              "test_cases": cases})
        return {"integrity": self.problem or "ok", "questions": questions}

    def generate_report(self):
        return f"Grading integrity check failed: {self.problem}" if self.problem else ""
