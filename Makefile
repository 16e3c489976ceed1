# Each target creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench-latency clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)  ## the main job: the whole pipeline on the built-in synthetic data
	$(BIN)/mobilecls pipeline --recipe recipes/demo.yaml --out runs/demo

test: $(STAMP)  ## the test suite without the tests marked slow (CI runs both)
	$(BIN)/python -m pytest -q -m "not slow"
	$(BIN)/ruff check mobilecls tests benchmarks

test-slow: $(STAMP)  ## the slow tests: the whole pipeline, tf.distribute strategies
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check mobilecls tests benchmarks

bench-latency: $(STAMP)  ## benchmarks/latency.py: shuffle cost and MobileNetV2 vs Keras, int8
	$(BIN)/python benchmarks/latency.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
