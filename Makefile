# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup system-deps lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Debian packages that the browser, Prometheus and TLS tests need; installed when missing.
system-deps:
	bash scripts/system-deps.sh

demo: setup
	$(BIN)/vitalstream demo

test: setup system-deps
	$(BIN)/python -m pytest -q -ra

lint: setup
	$(BIN)/ruff check vitalstream simulators tests bench

bench: setup
	$(BIN)/python bench/features.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .vitalstream out
