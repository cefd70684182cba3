# stidi: build the book and run the tests in a project-local virtualenv.
#
#   make book    build the book strictly (every chapter executed) into _build/html
#   make test    run the whole test suite (book build and browser check included)
#   make clean   remove build outputs, caches and the vendored browser libraries
#   make distclean   also remove the virtualenv

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when a requirements file or pyproject.toml changed.
STAMP := $(VENV)/.stidi-requirements.stamp

# Real datasets for tests and chapters, when the shared folder is present.
ifneq ($(wildcard ../shared/datasets/.),)
STIDI_DATA ?= $(abspath ../shared/datasets)
endif
ifdef STIDI_DATA
export STIDI_DATA
endif

PYTEST_ARGS ?=

.PHONY: book test vendor install clean distclean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

install: $(STAMP)

# Pinned vega, vega-lite, vega-embed, html-manager and MathJax for the offline
# book (a no-op when book/_static/vendor already matches the pins).
vendor:
	$(PYTHON) scripts/vendor_js.py

book: install vendor
	$(BIN)/jupyter-book build -W -n --keep-going .
	@echo "book: open _build/html/index.html"

test: install vendor
	$(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf _build .pytest_cache .numba_cache book/_static/vendor

distclean: clean
	rm -rf $(VENV)
