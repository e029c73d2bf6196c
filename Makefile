# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= fast
SEED ?= 42
# Package index for torch. Empty: pip's own configuration decides, which on the project's build
# machines finds the CPU wheel on local disk. PyPI's Linux torch wheels are CUDA builds, so elsewhere
# use `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` (or the CUDA index on a GPU machine).
TORCH_INDEX ?=
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k splits"`.
PYTEST_ARGS ?=

.PHONY: setup demo test smoke bench lab clean-outputs

# The CPU build of torch must be installed before the package: a bare `torch`
# requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## Run every notebook on real data in the fast profile (MovieLens-100k on a laptop CPU).
demo: setup
	$(VENV)/bin/vidrec-lab run --profile $(PROFILE) --seed $(SEED)

## Run every notebook on synthetic data in the smoke profile (a few minutes).
smoke: setup
	$(VENV)/bin/vidrec-lab run --profile smoke --seed $(SEED)

## The whole test suite: unit tests, notebook smoke runs, real-data checks where the data is present.
test: setup
	OMP_NUM_THREADS=2 $(PY) -m pytest $(PYTEST_ARGS)

## Throughput, memory and quality benchmarks; results in outputs/benchmarks/.
bench: setup
	$(PY) benchmarks/run_all.py

## Open JupyterLab on the notebooks.
lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs figures/*.png figures/*.pdf
