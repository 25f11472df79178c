# `make run` and `make test` set up .venv on first use. PYTHON picks the interpreter (>= 3.10).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= $(abspath ../shared/data/mnist)
STAMP := $(VENV)/.installed
# Without an NVIDIA GPU, take torch's CPU build from PyTorch's CPU index when it is reachable
# (PyPI's Linux wheel is the multi-GB CUDA build). Offline machines use their local wheel.
CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(shell if ! command -v nvidia-smi >/dev/null 2>&1 && $(PYTHON) -c "import socket; \
	socket.create_connection(('download.pytorch.org', 443), 3)" 2>/dev/null; then \
	echo --extra-index-url $(CPU_INDEX); fi)
# Tests, CI and benchmarks read the MNIST copy beside the project when there is one.
ifneq ($(wildcard $(DATA)/train-images-idx3-ubyte.gz),)
export DIGITS_DATA_DIR ?= $(DATA)
endif

.PHONY: setup run test unit clean bench

setup: $(STAMP)

# torch first, pinned by constraints.txt: a bare range would pull the newest CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt $(TORCH_INDEX) torch 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install -q -c constraints.txt -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import digits, torch; print('digits', digits.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

# The main job: find or download MNIST, train the tutorial's network, test, figures, report.
# ARGS passes options through, e.g. make run ARGS="--seed 1 --epochs 3".
run: $(STAMP)
	$(BIN)/digits run $(ARGS)

test: $(STAMP)
	DIGITS_TEST_DATA=$(DATA) $(BIN)/python -m pytest -q $(ARGS)

# The unit tests alone: everything but the tests marked slow (real MNIST, whole processes, servers,
# browsers, torchrun), which `make test` and CI run too.
unit: $(STAMP)
	DIGITS_TEST_DATA=$(DATA) $(BIN)/python -m pytest -q -m "not slow" $(ARGS)

# The CPU side-by-side against the seed's program (benchmarks/cpu_vs_seed.py; several minutes).
# It sets up the peer's environment itself; ARGS passes options, e.g. ARGS="--seeds 0 --threads 2".
bench:
	$(PYTHON) benchmarks/cpu_vs_seed.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache

# Few-shot experiment (issue 6): learning curve and unseen digits; writes docs/fewshot.
.PHONY: fewshot
fewshot: $(STAMP)
	$(BIN)/digits fewshot --out docs/fewshot $(ARGS)
