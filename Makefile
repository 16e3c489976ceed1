# Each target creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench-latency clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)  ## the main job: the whole pipeline on the built-in synthetic data
	$(BIN)/mobilecls pipeline --recipe recipes/demo.yaml --out runs/demo

test: $(STAMP)  ## the test suite (what CI runs)
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check mobilecls tests benchmarks

lint: $(STAMP)
	$(BIN)/ruff check mobilecls tests benchmarks

bench-latency: $(STAMP)  ## benchmarks/latency.py: shuffle cost and MobileNetV2 vs Keras, int8
	$(BIN)/python benchmarks/latency.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
