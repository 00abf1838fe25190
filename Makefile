# The two commands a new user needs: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DEMO_RECORDS ?= 1000000
PORT ?= 8080

.PHONY: install lock demo serve test check lint typecheck audit pytest pytest-fast bench clean container-test compose-test

install: $(VENV)/.installed

# Exactly the versions of the hashed lock (runtime and dev, build tools included), nothing
# resolved at install time; then this project itself, without its dependencies.
LOCK := requirements/dev.txt
# setup.py and the C sources: the fingerprint, query-key and lookup modules are compiled at
# install (gcc, Python's headers and libsodium-dev: README, "Install").
$(VENV)/.installed: pyproject.toml setup.py indexer/core/_fingerprints.c indexer/core/_querykeys.c \
		indexer/index/_lookups.c $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Refresh the locks after changing a dependency in pyproject.toml (or to take newer
# versions within its bounds): the one command, then review the diff and `make test`.
PIP_COMPILE := $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --upgrade
lock: install
	$(PIP_COMPILE) --output-file requirements/runtime.txt pyproject.toml
	$(PIP_COMPILE) --extra dev --output-file requirements/dev.txt pyproject.toml
	$(PIP_COMPILE) --output-file requirements/build.txt requirements/build.in

var/pepper.key:
	mkdir -p var
	umask 077 && head -c 32 /dev/urandom > $@
	chmod 600 $@

var/demo/sources.toml: | install
	$(BIN)/exposure-index synth --out var/demo --records $(DEMO_RECORDS)

var/index/current: var/demo/sources.toml var/pepper.key | install
	$(BIN)/exposure-index build var/demo/sources.toml --out var/index --pepper-file var/pepper.key

var/demo-api-key: | install
	umask 077 && $(BIN)/exposure-serve keys create "Demo insurer" --keys-db var/keys.sqlite > $@

demo: install var/index/current var/demo-api-key
	@echo "Demo index built from $(DEMO_RECORDS) synthetic records; API key in var/demo-api-key."
	@echo "Serving on http://127.0.0.1:$(PORT)/ (Ctrl-C to stop). Try the README's curl examples."
	$(BIN)/exposure-serve --index var/index --pepper-file var/pepper.key \
		--keys-db var/keys.sqlite --host 127.0.0.1 --port $(PORT)

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]): imports run one
# way (indexer core < index < private < build; service and client on top), no cycles.
lint: install
	$(BIN)/ruff check indexer service client tests bench deploy
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

pytest: install
	$(PY) -m pytest

# The fast lane: every test but the slow and browser ones, spread over the cores.
pytest-fast: install
	$(PY) -m pytest -q -n auto -m "not slow and not browser"

# Security checks of the code (bandit, configured in pyproject.toml) and of the locked
# dependency versions (pip-audit on $(LOCK), through tools/audit_dependencies.py). When
# PyPI's vulnerability data cannot be reached (it cannot from the project's machines:
# docs/operations.md, dependencies), the audit says "NOT AUDITED" and how many
# dependencies it could not check, and passes so that offline machines can still test;
# AUDIT_STRICT=1 makes that a failure. A known vulnerability always fails.
AUDIT_STRICT ?=
audit: install
	$(BIN)/bandit -q -c pyproject.toml -r indexer service client
	$(PY) tools/audit_dependencies.py --lock $(LOCK) $(if $(AUDIT_STRICT),--strict,)

# `make check` while working (lint, types and the fast tests, in parallel: about two
# minutes); `make test` is the whole suite, what CI runs.
check: install
	$(MAKE) -j3 --output-sync=target lint typecheck pytest-fast

test: lint typecheck audit pytest

# docs/design.md §6 side by side (bench/run.py): QUICK=1 about a minute, FULL=1 adds the
# 33-million-record build (minutes, ~15 GB of disk). Needs wrk (Debian package) and,
# for the profiles of the full run, py-spy in the venv: both installed if missing; and
# Splink for the matching comparison (bench/matching.py), installed if it can be.
bench: install
	@command -v wrk >/dev/null || { echo "bench: installing wrk"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q wrk || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q wrk; }; }
	@test -n "$(QUICK)" || test -x $(BIN)/py-spy || $(PY) -m pip install -q py-spy
	@$(PY) -c "import splink" 2>/dev/null || $(PY) -m pip install -q splink \
		|| echo "bench: splink could not be installed; the matching results say so"
	$(PY) bench/run.py $(if $(QUICK),--quick,) $(if $(FULL),--full,)

clean:
	rm -rf var/demo var/index var/keys.sqlite var/demo-api-key

# The image built from deploy/Dockerfile with podman and run as deploy/README.md documents
# (non-root, read-only root, noexec /tmp, no capabilities, secrets as files): lookups, bulk
# through exposure-client, HEALTHCHECK, SIGTERM drain. Installs podman, runc, debootstrap
# from Debian when missing; the debootstrap base image is cached in podman's store.
container-test: install
	deploy/ci/install-tools.sh
	$(PY) deploy/ci/container_test.py

# The compose topology (index-build job, two replicas, nginx) run with podman: see
# deploy/README.md ("Compose, run").
compose-test: install
	deploy/ci/install-tools.sh
	$(PY) deploy/ci/compose_test.py
