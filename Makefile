# minillama: the Quickstart is `make test` (install + every test and notebook) and `make book` (the HTML book).
# Every target installs into .venv first if needed, so each works on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed before the rest so that pip never picks a build for us: on Linux an unpinned `torch` is the
# multi-GB CUDA build. Override for your machine, e.g. `make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"`.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: help install test test-fast test-notebooks book train exercises lint bench clean

help:
	@echo "make test       install into $(VENV) and run the full suite (package tests + every notebook under nbval)"
	@echo "make book       install and build the HTML book into _build/html (warnings are errors)"
	@echo "make train      train the tiny model on tinyshakespeare (a few minutes on a laptop CPU), print bits per byte"
	@echo "make test-fast  the package tests only"
	@echo "make exercises  build student and autograder versions of the exercises into exercises/_dist/"
	@echo "make lint       ruff"
	@echo "make bench      run the benchmarks in bench/ (minutes; prints ratios against reference implementations)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

test-notebooks: install
	$(VENV)/bin/pytest chapters exercises $(PYTEST_ARGS)

book: install
	$(VENV)/bin/jupyter-book build . -W --builder html

train: install
	$(VENV)/bin/minillama train

exercises: install
	$(PY) exercises/build.py

lint: install
	$(VENV)/bin/ruff check minillama tests bench exercises

bench: install
	@for script in bench/*_bench.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf _build exercises/_dist .pytest_cache
