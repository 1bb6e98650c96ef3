# ORCHAT: stdlib-only runtime; the dev tools live in .venv (created by `make venv`).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PREFIX ?= /usr/local
DESTDIR ?=
DISTDIR ?= dist
VERSION := $(shell $(PYTHON) -c 'import sys; sys.path.insert(0, "."); import orchat; print(orchat.__version__)')
DEV_PACKAGES := pytest pytest-timeout coverage ruff prometheus-client PyYAML openai hypothesis vermin

.DEFAULT_GOAL := help
.PHONY: help venv lint fmt test test-fast demo bench bench-peers install uninstall dist clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.stamp: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(DEV_PACKAGES)
	# Subprocesses started with the venv's python (`python -m orchat`) report coverage too.
	echo "import coverage; coverage.process_startup()" > "$$($(VPY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/orchat-coverage.pth"
	touch $@

venv: $(VENV)/.stamp ## create the dev virtualenv (pytest, coverage, ruff, test helpers)

lint: venv ## ruff check + format check (bin/* named explicitly: ruff skips extensionless files)
	$(VENV)/bin/ruff check orchat tests bench bin/*
	$(VENV)/bin/ruff format --check orchat tests bench bin/*
	$(VENV)/bin/vermin -q --no-tips --violations -t=3.9- --backport dataclasses orchat bin/orchat

fmt: venv ## reformat the code
	$(VENV)/bin/ruff format orchat tests bench bin/*
	$(VENV)/bin/ruff check --fix orchat tests bench bin/*

test: lint ## lint, then the whole suite under branch coverage (gate: 90% of orchat/)
	rm -f .coverage .coverage.*
	COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml $(VENV)/bin/coverage run -m pytest $(PYTEST_ARGS)
	$(VENV)/bin/coverage combine -q
	$(VENV)/bin/coverage report

test-fast: venv ## unit tests only, no coverage
	$(VENV)/bin/pytest -q tests/unit

# The offline demo's own virtualenv (llama-cpp-python[server] + the SmolLM2 model); never on a server.
DEMO_VENV ?= .venv-demo

$(DEMO_VENV)/.stamp: scripts/demo.sh
	DEMO_VENV=$(DEMO_VENV) PYTHON=$(PYTHON) scripts/demo.sh build
	touch $@

.PHONY: demo-venv
demo-venv: $(DEMO_VENV)/.stamp ## build .venv-demo: llama.cpp server + SmolLM2-135M (compiles once, ~6 min)

demo: demo-venv ## offline demo: orchat asks a local llama.cpp server (no key, no network)
	DEMO_VENV=$(DEMO_VENV) PYTHON=$(PYTHON) scripts/demo.sh run

dist: ## build dist/orchat-VERSION.tar.gz and its .sha256
	@echo "dist: see issue 5"

clean: ## remove build and test leftovers
	rm -rf $(VENV) dist build .coverage .coverage.* htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
