# Each target creates or reuses .venv and installs what it needs: `make demo` the runtime only,
# `make test` and `make bench` also the test and Spark extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test
# Extra arguments for `flatprint demo`, e.g. `make demo DEMO_ARGS=--no-serve`.
DEMO_ARGS ?=

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUNTIME_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# The test extras include the runtime, so they also satisfy the runtime stamp.
$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(RUNTIME_STAMP) $@

demo: $(RUNTIME_STAMP)
	$(BIN)/flatprint demo $(DEMO_ARGS)

test: $(TEST_STAMP)
	bash scripts/ensure-chromium.sh
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/ingest.py --scale 0.01 0.1 --repeat 1
	$(BIN)/python benchmarks/run.py --scale 0.01 --repeat 5
	$(BIN)/python benchmarks/run.py --scale 0.1 --repeat 5

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
