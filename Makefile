# Two commands are the whole set-up: `make demo` and `make test`. Both build .venv from the pinned
# requirements when it is missing or older than requirements.txt / pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-scale gpu-check wheel venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 2; }
	@echo ">> creating $(VENV) with the pinned requirements (first time: a few minutes, ~6 GB)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m perceptions demo

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests/ -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# Long (about an hour on 2 quiet cores, ~4 GB of images in benchmarks/_work/scale/): the whole flow on a Place
# Pulse-sized synthetic city (110,988 images, ~1.17M votes) and on a tenth of it; adds to RESULTS.md.
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.bench_scale

# On a machine with a CUDA GPU, under 8 minutes: the CUDA tests, benchmarks/bench_gpu.py and `train` under torchrun
# on one GPU (plain and in an NCCL group); logs, figures and summary.txt in benchmarks/_work/gpu_check/. Without
# CUDA: syntax checks and one line. No $(STAMP): the script builds the venv itself unless a CUDA torch exists.
gpu-check:
	bash benchmarks/gpu_check.sh

# The sdist and the wheel (carrying the shipped model/) in dist/; .ci/wheel_check.sh checks the installed wheel.
wheel: $(STAMP)
	$(BIN)/python -m build --outdir dist

clean-venv:
	rm -rf $(VENV)
