# Each target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flatprint demo

test: $(STAMP)
	bash scripts/ensure-chromium.sh
	$(BIN)/ruff check --select F,E9 src tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py --scale 0.01 0.1 --repeat 1
	$(BIN)/python benchmarks/run.py --scale 0.01 --repeat 5
	$(BIN)/python benchmarks/run.py --scale 0.1 --repeat 5

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
