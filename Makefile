# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make run    install, then the whole job on synthetic audio (ser-batch demo): featurize, train, score
#   make test   install, lint (ruff, mypy) and run every test (CI runs this)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo

.PHONY: install run test test-fast lint clean

$(BIN)/ser-batch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/ser-batch

run: install
	$(BIN)/ser-batch demo $(DEMO)

test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check ser_batch flows tests benchmarks
	$(BIN)/ruff format --check ser_batch flows tests benchmarks
	$(BIN)/mypy

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not integration and not s3"

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info
