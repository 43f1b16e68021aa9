# Two commands from a fresh clone:
#   make run    set up .venv (if needed), then run the default workflow: snakemake --cores all
#   make test   set up .venv (if needed), then the README's test command: python -m pytest -q
# Set-up creates .venv when it is missing and installs diffmem with the tested pins
# (pip install -c constraints.txt -e ".[workflow,test]"). It is skipped while the stamp file
# .venv/.diffmem-setup-<hash> exists, the hash being that of pyproject.toml + constraints.txt, so a
# second `make run` / `make test` goes straight to its command. diffmem is installed editable: edits
# under src/ need no new set-up.
#
# Variables: PYTHON (interpreter that creates the venv, default python3), VENV (default .venv),
# SNAKEMAKE_ARGS (appended to the snakemake command, e.g. SNAKEMAKE_ARGS=-n for a dry run, or
# SNAKEMAKE_ARGS="--configfile config/smoke.yaml"), PYTEST_ARGS (appended to pytest).
# Managing your own environment instead: pip install -c constraints.txt -e ".[workflow,test]", then
# snakemake --cores all.

PYTHON ?= python3
VENV ?= .venv
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=

# sha256sum on Linux, shasum on macOS
SETUP_KEY := $(shell cat pyproject.toml constraints.txt | (sha256sum 2>/dev/null || shasum -a 256) | cut -c1-16)
STAMP := $(VENV)/.diffmem-setup-$(SETUP_KEY)
BIN := $(abspath $(VENV))/bin

.PHONY: run test setup help

help:
	@sed -n '1,15p' Makefile

run: setup
	@echo "==> default workflow: snakemake --cores all $(SNAKEMAKE_ARGS)"
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --cores all $(SNAKEMAKE_ARGS)

test: setup
	@echo "==> tests: python -m pytest -q $(PYTEST_ARGS)"
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

setup: $(STAMP)
	@echo "==> $(VENV) is set up (pyproject.toml + constraints.txt hash $(SETUP_KEY))"

$(STAMP):
	@echo "==> set-up: $(VENV) with diffmem and the tested pins of constraints.txt"
	@if [ ! -x "$(VENV)/bin/python" ]; then \
		echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); \
	else echo "$(VENV) exists; pyproject.toml or constraints.txt changed (or first set-up): installing"; fi
	$(VENV)/bin/python -m pip install -c constraints.txt -e ".[workflow,test]"
	rm -f $(VENV)/.diffmem-setup-*
	touch $@
