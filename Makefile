# The two commands a fresh machine needs are `make demo` and `make test`; everything else is a step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FACTORY := $(BIN)/factory
PYTEST := $(BIN)/python -m pytest
export FACTORY_STATE ?= /var/lib/factory

.PHONY: setup bootstrap venv services services-down status doctor test unit integration check demo \
        validate render render-check golden docs clean

setup: bootstrap venv  ## install the toolchain (root, Debian 12/13) and the Python environment

bootstrap:
	bash scripts/bootstrap.sh

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

services: setup  ## start dockerd, the registry on 127.0.0.1:5000 and arm64 binfmt (idempotent)
	bash scripts/services.sh up

services-down:  ## stop only what `make services` started
	bash scripts/services.sh down

status:
	bash scripts/services.sh status

doctor: venv
	$(FACTORY) doctor

test: services  ## everything CI runs: checks, unit tests, integration tests against the real services
	$(FACTORY) doctor
	$(MAKE) --no-print-directory check
	$(PYTEST) tests/unit -q
	$(PYTEST) tests/integration -q --durations=25

unit: venv
	$(PYTEST) tests/unit -q

integration: services
	$(PYTEST) tests/integration -q --durations=25

check: venv  ## types (mypy --strict), lint (ruff), and the repository's manifests and rendered contexts
	$(BIN)/mypy
	$(BIN)/ruff check
	@if [ -d manifests ] && ls manifests/*.yaml >/dev/null 2>&1; then \
	  $(FACTORY) validate && $(FACTORY) render --check; \
	else echo "check: no manifests yet"; fi

validate: venv
	$(FACTORY) validate

render: venv
	$(FACTORY) render

render-check: venv
	$(FACTORY) render --check

golden: venv  ## regenerate the renderer's golden Dockerfiles (tests/unit/golden/), then review the diff
	UPDATE_GOLDEN=1 $(PYTEST) tests/unit/test_render.py -q

demo: services  ## the main job end to end on the embedded default
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
