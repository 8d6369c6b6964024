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

# The evidence on real data (Fashion-MNIST): the paper's comparison on LeNet-300-100 and on vit_tiny, and the
# layer-collapse grid on the BatchNorm CNN; each sweep's compact records go to docs/results/<grid>/, and
# docs/RESULTS.md is written from those. Each sweep first copies in the runs its committed records hold, so only
# the points they lack are trained; a sweep stopped early resumes where it was. Time: see docs/RESULTS.md.
EVIDENCE := fashion fashion_vit fashion_collapse
evidence: $(STAMP)
	for grid in $(EVIDENCE); do \
	  $(BIN)/fggp sweep configs/$$grid.yaml --jobs 2 --no-report --out outputs/$$grid --from-records docs/results/$$grid; \
	  $(BIN)/fggp records outputs/$$grid docs/results/$$grid || exit 1; \
	done
	$(BIN)/fggp results $(addprefix docs/results/,$(EVIDENCE)) --out docs/RESULTS.md

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prune.py

clean-venv:
	rm -rf $(VENV)
