# Developer commands. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PIP_FLAGS ?= --quiet --disable-pip-version-check
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

STAMP = $(VENV)/.stamp-install
RUN_STAMP = $(VENV)/.stamp-run
PROJECT_FILES = setup.cfg $(wildcard setup.py pyproject.toml)

.PHONY: help install run test bench clean distclean

help: ## list the targets
	@echo "usage: make TARGET [VAR=value ...]"
	@echo
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'
	@echo
	@echo "variables: VENV=$(VENV) PYTHON=$(PYTHON) HOST=$(HOST) PORT=$(PORT) PYTEST_ARGS=..."

install: $(STAMP) ## create the virtualenv (VENV) and install the package with its dev and test extras

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's metadata changed (or the virtualenv was recreated).
$(STAMP): $(PROJECT_FILES) $(VENV)/pyvenv.cfg
	@echo "installing into $(VENV) ..."
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev,test]'
	@touch $@ $(RUN_STAMP)

# `make run` needs the package and its dev extra (the embedded S3 endpoint), no browser driver
# or test tools: a faster first start.
$(RUN_STAMP): $(PROJECT_FILES) $(VENV)/pyvenv.cfg
	@echo "installing into $(VENV) ..."
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]'
	@touch $@

run: $(RUN_STAMP) ## start the embedded dev stack (gateway dev) on http://HOST:PORT
	exec $(VENV)/bin/gateway dev --host $(HOST) --port $(PORT)

test: install ## run the whole test suite (extra pytest options: PYTEST_ARGS="-k foo -x")
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install ## run every bench/*.py in turn (files starting with _ are helpers)
	@set -e; shopt -s nullglob; ran=0; \
	for f in bench/*.py; do \
		case "$${f##*/}" in _*) continue;; esac; \
		echo "== $$f"; $(PY) "$$f"; ran=$$((ran + 1)); \
	done; \
	[ $$ran -gt 0 ] || echo "no benchmarks in bench/"

clean: ## remove caches and build artefacts (keeps the virtualenv)
	rm -rf build dist .pytest_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean, and remove the virtualenv too
	rm -rf $(VENV)
