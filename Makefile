# stidi: build the book and run the tests in a project-local virtualenv.
#
#   make book    build the book strictly (every chapter executed) into _build/html
#   make test    run the whole test suite (book build and browser check included)
#   make lab     open the chapters as notebooks in JupyterLab (no Node.js needed)
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

.PHONY: book test lab vendor install clean distclean

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

# JupyterLab from the project's virtualenv, on the chapters' MyST files.
# Jupytext (its JupyterLab extension ships prebuilt in the Python package, so
# no Node.js) opens book/*.md as notebooks and pairs each with a copy in
# _build/lab/*.ipynb that keeps the outputs; the .md files stay the sources.
# The settings override (a project-local file, nothing is written to ~) makes
# "Jupytext Notebook" the default viewer for Markdown, as postBuild does on Binder.
LAB_SETTINGS := $(CURDIR)/_build/lab/settings
LAB_FLAGS := --LabApp.app_settings_dir=$(LAB_SETTINGS) \
	--ContentsManager.formats="book///md:myst,_build/lab///ipynb"
LAB_ARGS ?=
lab: install
	mkdir -p $(LAB_SETTINGS)
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $(LAB_SETTINGS)/overrides.json
	$(BIN)/jupyter lab $(LAB_FLAGS) $(LAB_ARGS) book/01_temporal_coding.md

clean:
	rm -rf _build .pytest_cache .numba_cache book/_static/vendor

distclean: clean
	rm -rf $(VENV)
