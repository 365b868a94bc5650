# The README's two commands: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-postgres lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Set up and run the gateway with the national demo data on http://127.0.0.1:8000
demo: $(STAMP)
	$(BIN)/gateway demo

## Set up and run the whole test suite (on PostgreSQL too when GATEWAY_TEST_DATABASE_URL is set)
test: $(STAMP)
	$(BIN)/pytest -q

## Lint and type-check
lint: $(STAMP)
	$(BIN)/ruff check gateway adapters simulators tests tools
	$(BIN)/ruff format --check gateway adapters simulators tests tools
	$(BIN)/mypy

## Benchmarks (see README)
bench: $(STAMP)
	$(BIN)/gateway bench ingest

clean:
	rm -rf $(VENV) var build *.egg-info
