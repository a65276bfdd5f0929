# High Performance Deep Learning: the two commands (make run, make test) and friends.
# Works from a fresh clone with only Python 3.10+ and pip: when no virtual or conda
# environment is active, everything goes into .venv/.
#
#   make run     execute every lesson and lab (hpdl run) -> build/report.html, results.json
#   make test    the whole test suite (make lint, unit tests, notebooks with nbval, labs),
#                then every CUDA kernel compiled for sm_80 and sm_90 (hpdl kernels)
#   make lint    the pre-commit hooks on every file: ruff, notebooks stored without outputs
#   make lab     JupyterLab on the course
#   make student regenerate labs/*.ipynb from labs/solutions/
#   make gpu-check  on a GPU node (its CUDA PyTorch active): everything a GPU can prove
#
# Variables: PROFILE=quick|full|auto, DEVICE=auto|cpu|cuda, LOCK=0 (install the ranges of
# pyproject.toml into an active environment that already has its own PyTorch, e.g. a GPU
# node, instead of the exact lock), TORCH_INDEX_URL (where the CPU-only PyTorch comes from),
# TEST_WORKERS=2 (parallel pytest workers of `make test`; 0: none).

SHELL := /bin/bash
PYTHON ?= python3
PROFILE ?= auto
DEVICE ?= auto
LOCK ?= 1
# pytest-xdist workers; --dist loadscope keeps each notebook's cells (and each test module)
# on one worker, in order. 2 halves CI's time on 2 cores; TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements/lock.txt)
# A plain `pip install torch` on Linux pulls the multi-GB CUDA build; the CPU index does not.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu

ifneq ($(strip $(VIRTUAL_ENV)$(CONDA_PREFIX)),)
  PY := python
  STAMP := build/.installed-active-env
else
  PY := .venv/bin/python
  STAMP := .venv/.installed
endif
HPDL := $(PY) -m course_utils.hpdl.cli
# pre-commit's hooks call `python`: the environment's, also when it is .venv/ (not active).
VENV_PATH := $(if $(filter .venv/bin/python,$(PY)),PATH="$(CURDIR)/.venv/bin:$$PATH",)
NOTEBOOKS = $(shell find lessons labs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*')

.PHONY: install run test lab student lint lock clean gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	@if [ "$(PY)" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then \
	  echo "creating .venv with $(PYTHON)"; $(PYTHON) -m venv .venv; fi
ifeq ($(LOCK),1)
	@$(PY) -c "import torch" 2>/dev/null || \
	  $(PY) -m pip install "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_INDEX_URL)
	$(PY) -m pip install -r requirements/lock.txt
	$(PY) -m pip install --no-deps -e .
else
	$(PY) -m pip install -e ".[dev,mpi,lab]"
endif
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

run: install
	$(HPDL) run --profile $(PROFILE) --device $(DEVICE)

# The tests record every kernel launch on the simulator (HPDL_KERNEL_LOG); `hpdl kernels`
# then compiles each kernel of the course for sm_80 and sm_90 with the real CUDA compiler.
test: install lint
	@mkdir -p build && rm -f build/kernel-launches.jsonl
	HPDL_KERNEL_LOG="$(CURDIR)/build/kernel-launches.jsonl" \
	HPDL_PROFILE=$${HPDL_PROFILE:-quick} $(PY) -m pytest -q tests lessons labs \
	  --ignore=labs/solutions --nbval-lax --nbval-current-env --durations=15 \
	  -n $(TEST_WORKERS) --dist loadscope
	@if [ "$${NUMBA_ENABLE_CUDASIM:-}" = "0" ]; then \
	  echo "kernels: compiled and run on this GPU by the tests (NUMBA_ENABLE_CUDASIM=0)"; \
	elif [ -s build/kernel-launches.jsonl ] || [ "$${NUMBA_ENABLE_CUDASIM:-}" = "1" ]; then \
	  $(HPDL) kernels --launches build/kernel-launches.jsonl --out build/kernels.json \
	    --reference data/kernel_resources.json; \
	else echo "kernels: none launched on the simulator (a real GPU compiled and ran them)"; fi
	@if [ -d .git ] && [ -n "$$(git status --porcelain -- lessons labs course_utils data tests)" ]; then \
	  echo "error: running the tests modified tracked sources:"; git status --short; exit 1; fi

# The pre-commit hooks on every file (ruff; notebooks stored clean). Outside a git checkout
# (a tarball) pre-commit cannot run, so the same two checks run directly.
lint: install
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  $(VENV_PATH) $(PY) -m pre_commit run --all-files --show-diff-on-failure; \
	else \
	  $(PY) -m ruff check . && $(PY) -m course_utils.hpdl.hygiene $(NOTEBOOKS); \
	fi

# On a GPU node, in an environment whose PyTorch has CUDA (not the CPU-only lock): every
# notebook in the full profile on CUDA, the GPU tests, NCCL, measured peaks against the data
# sheet -> build/gpu-check/gpu-check.md and results/reference/<gpu>.json.
gpu-check: LOCK := 0
gpu-check: install
	MPLBACKEND=Agg NUMBA_ENABLE_CUDASIM=0 $(HPDL) gpu-check

lab: install
	$(PY) -m jupyter lab lessons/00_start_here.ipynb

student: install
	$(HPDL) student

lock: install
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu//' > requirements/lock.new
	@echo "review requirements/lock.new (keep the header comment), then move it over lock.txt"

clean:
	rm -rf build .pytest_cache .ruff_cache
