# The README's commands. Everything runs from the project virtualenv in .venv, built from
# requirements.lock (exact versions) so a fresh machine gets the tree the tests ran on.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export AWS_REQUEST_CHECKSUM_CALCULATION := when_required
export AWS_RESPONSE_CHECKSUM_VALIDATION := when_required
# An S3 endpoint that restarts costs time, not a push (svd.storage retries alike: S3_ATTEMPTS).
export AWS_RETRY_MODE := standard
export AWS_MAX_ATTEMPTS := 10

.PHONY: demo test unit lint bench faults serve stop ui clean system venv

# OpenCV's wheel needs libGL and glib; the UI tests drive Debian's chromium (Selenium); everything
# else comes from PyPI.
system:
	@PATH="$$PATH:/sbin:/usr/sbin"; \
	if ! ldconfig -p | grep -q libGL.so.1 || ! ldconfig -p | grep -q libgthread-2.0 \
	    || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    libgl1 libglib2.0-0 git chromium chromium-driver; fi

$(BIN)/svd: pyproject.toml requirements.lock | system
	@if [ -L $(VENV) ]; then echo "$(VENV) links to another project's venv: run make venv there" >&2; exit 1; fi
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

venv: $(BIN)/svd

demo: $(BIN)/svd
	$(BIN)/python -m flows pipeline
	$(BIN)/dvc push -q
	$(BIN)/svd report

# Two pytest-xdist workers, each given whole test files (module fixtures are built once): much of the
# suite waits on servers, heartbeats and subprocesses while the other worker computes. Files go out
# in collection order, the two long e2e files first (xdist's default puts the most tests first).
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: $(BIN)/svd
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PYTEST) --durations=15

# The inner loop: library tests on tiny real media, no servers (under 2 minutes on 2 cores).
unit: $(BIN)/svd
	$(PYTEST) -q tests/unit

lint: $(BIN)/svd
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/svd
	$(BIN)/python bench/run.py

# Fault injection against the real local servers: a table of fault -> outcome -> rows or objects lost.
faults: $(BIN)/svd
	$(BIN)/python bench/faults.py

# Local stack: Prefect server + worker, MLflow server, S3 endpoint, all on 127.0.0.1. Ctrl-C, or
# `make stop` from another shell, stops all of it.
serve: $(BIN)/svd
	$(BIN)/python -m infra.stack up

stop: $(BIN)/svd
	$(BIN)/python -m infra.stack down

# The store made whole first (svd/tracking.py): MLflow makes it in place, and a Ctrl-C then broke it.
ui: $(BIN)/svd
	$(BIN)/python -c 'from svd.tracking import create_sqlite_store as c; from pathlib import Path; c(Path("mlflow.db"))'
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf data models reports mlflow.db mlartifacts .dvc/cache
