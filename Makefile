# Two commands for a fresh machine: `make quick` (the main job) and `make test` (the whole suite).
# Both create or reuse the local virtual environment in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fggp-installed

.PHONY: setup test quick bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

quick: $(STAMP)
	$(BIN)/fggp run arch=tiny dataset=digits recipe=fggp target_sparsity=0.9 epochs=15 prune_end_epoch=10 --out outputs/runs

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prune.py

clean-venv:
	rm -rf $(VENV)
