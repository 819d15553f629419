# Two commands set everything up: `make demo` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: demo test lint bench report clean-results

$(BIN)/snakemake: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@

demo: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES) --configfile config.yaml
	@cat results/summary.md

test: $(BIN)/snakemake
	$(BIN)/python -m pytest

lint: $(BIN)/snakemake
	$(BIN)/snakemake --lint

report: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

bench: $(BIN)/snakemake
	$(BIN)/python bench/run_all.py
