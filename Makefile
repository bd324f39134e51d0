# The two commands of the README:
#   make demo   installs into .venv and runs the whole farm embedded (no services needed)
#   make test   installs everything and runs lint, types and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint browser services gpu-kit

$(BIN)/farm: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: a range would let pip pick a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/farm

install: $(BIN)/farm

demo: install
	$(BIN)/farm demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The browser test drives Debian's chromium (no browser download); a no-op once installed.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# PgBouncer (Debian's 1.18) for the tests that run the farm through a transaction pooler.
services:
	command -v pgbouncer >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer)

test: lint browser services
	$(BIN)/pytest

# What travels to a lent GPU machine: wheels of what it lacks (bench/README.md, "The device kit").
gpu-kit: install
	$(BIN)/python -m bench.gpu_kit.prepare
