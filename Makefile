# Two commands for a fresh machine: `make quick` (the main job) and `make test` (the whole suite).
# Both create or reuse the local virtual environment in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fggp-installed

.PHONY: setup test quick evidence bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Notebooks 01 and 02 run under nbval from a scratch copy, so their default ../outputs is not the user's.
# One pytest-xdist worker per core, one thread each (workers with all threads each oversubscribe the cores).
# Notebook 03 refuses a runs_dir without runs (the scratch copy has none); tests/test_report.py executes it
# end to end on a fixture of runs instead.
test: $(STAMP)
	@scratch=$$(mktemp -d) && mkdir $$scratch/notebooks && cp notebooks/01_*.ipynb notebooks/02_*.ipynb $$scratch/notebooks/ && \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -c pyproject.toml --rootdir . -q --durations=20 \
	  -n auto --dist loadfile tests $$scratch/notebooks --nbval-lax --nbval-current-env; \
	status=$$?; rm -rf $$scratch; exit $$status

quick: $(STAMP)
	$(BIN)/fggp sweep configs/quick.yaml --jobs 2 --out outputs

# The evidence on real data (Fashion-MNIST): the paper's comparison on LeNet-300-100 and the layer-collapse
# grid on the BatchNorm CNN, then docs/RESULTS.md written from the runs. Time: see docs/RESULTS.md.
evidence: $(STAMP)
	$(BIN)/fggp sweep configs/fashion.yaml --jobs 2 --out outputs/fashion
	$(BIN)/fggp sweep configs/fashion_collapse.yaml --jobs 2 --out outputs/fashion_collapse
	$(BIN)/fggp results outputs/fashion outputs/fashion_collapse --out docs/RESULTS.md

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prune.py

clean-venv:
	rm -rf $(VENV)
