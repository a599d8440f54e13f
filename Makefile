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
NPM ?= npm
# The uploader's prebuilt browser bundle (Uppy: Dashboard and Tus), copied out of node_modules
# into the static files; neither is in the repository.
VENDOR = gateway/static/vendor/uppy
VENDOR_STAMP = $(VENDOR)/.stamp-npm

.PHONY: help install run test bench vendor clean distclean

help: ## list the targets
	@echo "usage: make TARGET [VAR=value ...]"
	@echo
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'
	@echo
	@echo "variables: VENV=$(VENV) PYTHON=$(PYTHON) HOST=$(HOST) PORT=$(PORT) PYTEST_ARGS=..."

install: $(STAMP) $(VENDOR_STAMP) ## create the virtualenv (VENV) and install the package with its dev and test extras

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's metadata changed (or the virtualenv was recreated).
$(STAMP): $(PROJECT_FILES) $(VENV)/pyvenv.cfg
	@echo "installing into $(VENV) ..."
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev,test]'
	@touch $@ $(RUN_STAMP)

vendor: $(VENDOR_STAMP) ## install the browser packages (npm ci) and copy the uploader into gateway/static/vendor

# Re-run only when the lock file changed (or the copied bundle went missing). Without npm the
# gateway still runs; the files page then says that its uploader is not installed.
$(VENDOR_STAMP): package-lock.json package.json
	@if ! command -v $(NPM) >/dev/null 2>&1; then \
		echo "warning: $(NPM) not found: the files page's uploader is not installed" >&2; \
		exit 0; \
	fi; \
	set -e; echo "installing the browser packages (npm ci) ..."; \
	$(NPM) ci --no-audit --no-fund --loglevel=error; \
	mkdir -p $(VENDOR); \
	cp node_modules/uppy/dist/uppy.min.js node_modules/uppy/dist/uppy.min.css $(VENDOR)/; \
	cp node_modules/uppy/LICENSE $(VENDOR)/LICENSE 2>/dev/null || true; \
	touch $@

# `make run` needs the package and its dev extra (the embedded S3 endpoint), no browser driver
# or test tools: a faster first start.
$(RUN_STAMP): $(PROJECT_FILES) $(VENV)/pyvenv.cfg
	@echo "installing into $(VENV) ..."
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]'
	@touch $@

run: $(RUN_STAMP) $(VENDOR_STAMP) ## start the embedded dev stack (gateway dev) on http://HOST:PORT
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

distclean: clean ## clean, and remove the virtualenv, node_modules and the copied uploader too
	rm -rf $(VENV) node_modules gateway/static/vendor
