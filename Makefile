# Two entry points, each self-contained on a fresh machine:
#   make demo   - create .venv, install tsclab, run the headline demo
#   make test   - create .venv, install tsclab with its test tools, run
#                 ruff, mypy and the whole pytest suite (the real-guest
#                 cases run where QEMU and the fetched guest are present)
#   make guest  - fetch and build the real guest (needs apt and gcc)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test guest lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tsclab demo

guest: $(VENV)/.installed
	$(BIN)/tsclab guest fetch

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed
	$(BIN)/mypy

pytest: $(VENV)/.installed
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/reader_bench.py
	$(BIN)/python bench/timekeeper_bench.py
	$(BIN)/python bench/sim_bench.py
	$(BIN)/python bench/explore_bench.py
	$(BIN)/python bench/kvm_migrate_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
