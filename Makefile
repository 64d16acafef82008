# The two commands a new user needs are `make run` and `make test`; both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: run bytecode test test-fast check lint bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps re-run pip only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make run: open the console on the embedded sandbox. The package's bytecode is compiled first: an
## editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE set (as on CI machines) every
## start would compile ~250 modules again (a quarter of a second before the first screen).
run: install bytecode
	$(BIN)/opsconsole

bytecode: $(BIN)/python
	@$(BIN)/python -m compileall -q -j 0 opsconsole bot >/dev/null

## make test: install the test extras and run the whole suite, on both cores (pytest-xdist). A file's
## tests run on one worker, in order: several modules share one local cloud or sandbox per module and
## build on what the tests before did (a failback after the failover); work stealing could move a test
## to the other worker, onto a fresh fixture. Files are handed out as workers free up. The package's
## bytecode is compiled first (see `run`): the suite starts the CLI in a few hundred processes.
test: install-test bytecode
	$(BIN)/python -m pytest -n 2 --dist loadfile

## make test-fast: the in-process tests (unit, CLI, server, console, store), on both cores; no
## subprocesses of the CLI, no playbook runs, no local cloud. The loop to run while editing.
test-fast: install-test
	$(BIN)/python -m pytest -n 2 -m "not slow" --durations=5 \
		tests/unit tests/cli tests/server tests/tui tests/integration/test_audit.py \
		tests/integration/test_store.py tests/integration/test_migrations.py tests/integration/test_locks.py

## make lint: ruff, mypy (strict on opsconsole/), import-linter, ansible-lint (production profile)
lint: install-test
	$(BIN)/ruff check opsconsole bot tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider --no-header tests/unit/test_import_cycles.py tests/unit/test_layers.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/ansible-lint --offline --profile production playbooks/

## make check: everything CI checks
check: lint test

## make bench: run bench/ and write bench/results/
bench: install-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
