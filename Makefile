# ORCHAT: stdlib-only runtime; the dev tools live in .venv (created by `make venv`).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PREFIX ?= /usr/local
DESTDIR ?=
DISTDIR ?= dist
VERSION := $(shell $(PYTHON) -c 'import sys; sys.path.insert(0, "."); import orchat; print(orchat.__version__)')
# The dev/test tools by name: the source of the pins in requirements-dev.txt, which `make venv`
# installs (exact versions, so a new release of any of them cannot turn main red by itself);
# `make update-dev-deps` refreshes the pins on purpose after a change here.
DEV_PACKAGES := pytest pytest-timeout coverage ruff prometheus-client PyYAML openai hypothesis vermin
DEV_REQUIREMENTS := requirements-dev.txt

.DEFAULT_GOAL := help
.PHONY: help venv update-dev-deps lint fmt test test-fast demo bench bench-peers install uninstall dist deb rpm docs clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.stamp: Makefile $(DEV_REQUIREMENTS)
	$(PYTHON) -m venv --clear $(VENV)
	$(VPY) -m pip install -q -r $(DEV_REQUIREMENTS)
	$(VPY) -m pip check
	# Subprocesses started with the venv's python (`python -m orchat`) report coverage too.
	echo "import coverage; coverage.process_startup()" > "$$($(VPY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/orchat-coverage.pth"
	touch $@

venv: $(VENV)/.stamp ## create the dev virtualenv from the pins in requirements-dev.txt (pytest, coverage, ruff, test helpers)

# A fresh virtualenv gets the newest DEV_PACKAGES and their dependencies; its `pip freeze` becomes
# the new requirements-dev.txt (pip itself included). Review the diff, run `make test`, commit.
PIN_VENV := .venv-pin
update-dev-deps: ## re-pin requirements-dev.txt to the newest DEV_PACKAGES (the only target that takes new versions)
	rm -rf $(PIN_VENV)
	$(PYTHON) -m venv $(PIN_VENV)
	$(PIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(PIN_VENV)/bin/python -m pip install -q $(DEV_PACKAGES)
	$(PIN_VENV)/bin/python -m pip check
	{ echo "# Pinned dev/test dependencies: written by \`make update-dev-deps\` (pip freeze of a fresh venv"; \
	  echo "# with DEV_PACKAGES from the Makefile), installed by \`make venv\`. Do not edit by hand."; \
	  echo "# Generated with Python $$($(PIN_VENV)/bin/python -c 'import platform; print(platform.python_version())')."; \
	  echo "# No hashes: several pins are compiled wheels whose hashes differ per Python version and"; \
	  echo "# platform, so one machine's hashes would refuse every other. Dependencies that only older"; \
	  echo "# Pythons need (tomli, exceptiongroup) are not pinned here."; \
	  $(PIN_VENV)/bin/python -m pip freeze --all --exclude setuptools --exclude wheel; } > $(DEV_REQUIREMENTS).tmp
	mv $(DEV_REQUIREMENTS).tmp $(DEV_REQUIREMENTS)
	rm -rf $(PIN_VENV)
	@git diff --stat -- $(DEV_REQUIREMENTS) 2>/dev/null || true

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

# install/uninstall: the file layout lives in install.sh (the air-gapped installer too), so both agree.
# SYSCONFDIR (default /etc) and UNITDIR (default $(PREFIX)/lib/systemd/system, /lib/... for /usr) may be set.
INSTALL_FLAGS = --prefix '$(PREFIX)' $(if $(DESTDIR),--destdir '$(DESTDIR)') $(if $(SYSCONFDIR),--sysconfdir '$(SYSCONFDIR)') $(if $(UNITDIR),--unitdir '$(UNITDIR)')
DIST_NAME = orchat-$(VERSION)
DIST_FILES = install.sh Makefile README.md pyproject.toml requirements-dev.txt LICENSE orchat bin docs etc systemd debian orchat.spec
# Reproducible tarballs: entries sorted, owned by 0:0, dated by the last commit (or SOURCE_DATE_EPOCH).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

install: ## install under $(DESTDIR)$(PREFIX): lib/orchat, bin/, man page, completions, etc/ (never overwriting config), units
	./install.sh $(INSTALL_FLAGS)

uninstall: ## remove what `make install` put there, except config
	./install.sh --uninstall $(INSTALL_FLAGS)

dist: ## build $(DISTDIR)/orchat-VERSION.tar.gz and its .sha256: what an operator carries into an air-gapped network
	mkdir -p '$(DISTDIR)'
	set -o pipefail; tar --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner \
		--mode='u+rwX,go+rX,go-w' --exclude=__pycache__ --exclude='*.pyc' --exclude='*~' \
		--transform 's,^,$(DIST_NAME)/,' -cf - $(wildcard $(DIST_FILES)) | gzip -9n > '$(DISTDIR)/$(DIST_NAME).tar.gz.tmp'
	mv '$(DISTDIR)/$(DIST_NAME).tar.gz.tmp' '$(DISTDIR)/$(DIST_NAME).tar.gz'
	cd '$(DISTDIR)' && sha256sum '$(DIST_NAME).tar.gz' > '$(DIST_NAME).tar.gz.sha256'
	@echo '$(DISTDIR)/$(DIST_NAME).tar.gz'

# deb/rpm: built from the release tarball, whose `make install DESTDIR=... PREFIX=/usr` is the
# packages' file list. The changelog and the spec must name orchat/__init__.py's version.
BUILDDIR ?= build
DEBDIR ?= $(DISTDIR)
RPMDIR ?= $(DISTDIR)
PACKAGE_VERSION = $(shell sed -n '1s/^orchat (\(.*\)-[^-]*).*/\1/p' debian/changelog)
SPEC_VERSION = $(shell sed -n 's/^Version:[[:space:]]*//p' orchat.spec)

deb: dist ## build $(DEBDIR)/orchat_VERSION-N_all.deb from the release tarball (dpkg-buildpackage -us -uc -b)
	@test '$(PACKAGE_VERSION)' = '$(VERSION)' || { echo "debian/changelog says $(PACKAGE_VERSION), orchat/__init__.py $(VERSION)" >&2; exit 1; }
	rm -rf '$(BUILDDIR)/deb' && mkdir -p '$(BUILDDIR)/deb' '$(DEBDIR)'
	tar -xzf '$(DISTDIR)/$(DIST_NAME).tar.gz' -C '$(BUILDDIR)/deb'
	cd '$(BUILDDIR)/deb/$(DIST_NAME)' && dpkg-buildpackage -us -uc -b
	mv '$(BUILDDIR)'/deb/orchat_*_all.deb '$(BUILDDIR)'/deb/orchat_*.buildinfo '$(BUILDDIR)'/deb/orchat_*.changes '$(DEBDIR)/'
	rm -rf '$(BUILDDIR)/deb'

# rpmbuild --nodeps: on Debian the rpm database is empty, so BuildRequires cannot be checked.
rpm: dist ## build $(RPMDIR)/orchat-VERSION-N.noarch.rpm from the release tarball (rpmbuild -bb)
	@test '$(SPEC_VERSION)' = '$(VERSION)' || { echo "orchat.spec says $(SPEC_VERSION), orchat/__init__.py $(VERSION)" >&2; exit 1; }
	rm -rf '$(BUILDDIR)/rpm' && mkdir -p '$(BUILDDIR)/rpm' '$(RPMDIR)'
	rpmbuild -bb --nodeps --define '_topdir $(abspath $(BUILDDIR)/rpm)' --define '_sourcedir $(abspath $(DISTDIR))' \
		--define '_rpmdir $(abspath $(BUILDDIR)/rpm)' --define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm' orchat.spec
	mv '$(BUILDDIR)'/rpm/orchat-*.noarch.rpm '$(RPMDIR)/'
	rm -rf '$(BUILDDIR)/rpm'

# Issue 17 compares the policy's cost with the daemon as it was when the issue was filed (a git checkout only).
BENCH_BEFORE := $(shell git rev-parse -q --verify '9017c40^{commit}' >/dev/null 2>&1 && echo --before 9017c40)

bench: venv ## run bench/ (start-up, one-shot, metrics, shared ledger, daemon, daemon workers) and write docs/benchmarks.md
	$(VPY) bench/startup
	$(VPY) bench/oneshot
	$(VPY) bench/history_lookup
	$(VPY) bench/metrics
	$(VPY) bench/ledger --contended
	@if [ -x bench/daemon ]; then $(VPY) bench/daemon; fi
	@if [ -x bench/daemon ]; then $(VPY) bench/daemon --workers; fi
	@if [ -x bench/daemon ]; then $(VPY) bench/daemon --policy --rounds 5 $(BENCH_BEFORE); fi
	@if [ -x bench/daemon ] && command -v valgrind >/dev/null; then $(VPY) bench/daemon --policy --instructions $(BENCH_BEFORE); \
	else echo "bench: no valgrind: instructions per request not counted"; fi
	@if [ -x bench/daemon ]; then $(VPY) bench/daemon --policy --workers; fi

bench-peers: venv ## install llm, shell-gpt, litellm[proxy] into .bench-peers/ and compare ORCHAT with them (docs/benchmarks.md)
	$(VPY) bench/peers install
	$(VPY) bench/peers run

docs: ## regenerate docs/orchat.1 and the completions from the argument parser (a test fails on drift)
	$(PYTHON) -m orchat man > docs/orchat.1
	$(PYTHON) -m orchat completion bash > docs/completions/orchat.bash
	$(PYTHON) -m orchat completion zsh > docs/completions/_orchat

clean: ## remove build and test leftovers
	rm -rf $(VENV) $(PIN_VENV) dist build .coverage .coverage.* htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
