# Each target creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The real clients of tests/test_clients.py, each in its own venv (they cannot share .venv:
# mediapipe pins absl-py~=2.3 against tfmot's ~=1.2; tflite-runtime 2.14 needs numpy<2).
MEDIAPIPE_VENV := .venv-mediapipe
TFLITE_RUNTIME_VENV := .venv-tflite-runtime
CLIENTS := $(MEDIAPIPE_VENV)/.installed $(TFLITE_RUNTIME_VENV)/.installed

.PHONY: demo test test-slow lint bench-latency bench-softmax client-venvs clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/python -m mobilecls.models.grouped_kernel  # compiles ShuffleNetV1's grouped 1x1 training op (g++)
	touch $(STAMP)

$(MEDIAPIPE_VENV)/.installed: tests/clients/requirements-mediapipe.txt
	$(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/pip install --quiet -r $<
	touch $@

$(TFLITE_RUNTIME_VENV)/.installed: tests/clients/requirements-tflite-runtime.txt
	$(PYTHON) -m venv $(TFLITE_RUNTIME_VENV)
	$(TFLITE_RUNTIME_VENV)/bin/pip install --quiet -r $<
	touch $@

client-venvs: $(CLIENTS)  ## MediaPipe and tflite-runtime 2.14 venvs for tests/test_clients.py

demo: $(STAMP)  ## the main job: the whole pipeline on the built-in synthetic data
	$(BIN)/mobilecls pipeline --recipe recipes/demo.yaml --out runs/demo

# The fast run spreads test files over the cores (pytest-xdist, one file per worker at a time so
# that module fixtures are made once), the longest files first (tests/conftest.py orders them;
# xdist's own reordering, by number of tests, is off); the slow run stays serial (it trains and
# runs subprocesses).
test: $(STAMP) $(CLIENTS)  ## the test suite without the tests marked slow (CI runs both)
	$(BIN)/python -m mobilecls.models.grouped_kernel  # once, before the workers (rebuilt if its source changed)
	$(BIN)/python -m pytest -q -m "not slow" --numprocesses auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder
	$(BIN)/ruff check mobilecls tests benchmarks

test-slow: $(STAMP) $(CLIENTS)  ## the slow tests: the whole pipeline, tf.distribute strategies
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check mobilecls tests benchmarks

bench-latency: $(STAMP)  ## benchmarks/latency.py: shuffle cost and MobileNetV2 vs Keras, int8
	$(BIN)/python benchmarks/latency.py

bench-softmax: $(STAMP)  ## benchmarks/softmax_cost.py: int8 latency and accuracy with and without the softmax
	$(BIN)/python benchmarks/softmax_cost.py

clean:
	rm -rf $(VENV) $(MEDIAPIPE_VENV) $(TFLITE_RUNTIME_VENV) build *.egg-info .pytest_cache
