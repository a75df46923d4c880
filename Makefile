# Contact Book — `make run` and `make test` do their own set-up on a fresh clone.

# The first Python >= 3.11 on PATH (override with `make PYTHON=/path/to/python3.12 …`).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint format bench bench-import bench-search clean

# Runtime dependencies at the versions of requirements.lock (the ones the tests and the
# Docker image use), so a release published since cannot change what a fresh clone runs.
$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed: install it and run make again"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Serve the sample contacts on http://127.0.0.1:$(PORT) (embedded PostgreSQL and Redis,
## in the same per-user data folder every `contactbook` command uses): `make run PORT=8001`.
PORT ?= 8000
run: install
	$(BIN)/contactbook serve --port $(PORT)

## The whole test suite, coverage at least 85%. Warnings are errors: pyproject.toml's
## filterwarnings (a command-line -W error would override its documented exceptions).
test: install
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=85 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmarks print figures; they are not tests. ROWS=100000 for a quicker run.
ROWS ?= 1000000
bench: bench-import bench-search

bench-import: install
	$(BIN)/python bench/import.py --rows $(ROWS)

bench-search: install
	$(BIN)/python bench/search.py --rows $(ROWS)

## Mixed v1/v2/read traffic at the highest rate with p99 < 100 ms, 100,000 contacts
## (ROWS does not apply); API workers 1 and 2. Takes about 15 minutes.
.PHONY: bench-load
bench-load: install
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov .pytest_cache .ruff_cache .mypy_cache test-output
