# hostwarden: `make run` serves the console, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HW := $(VENV)/bin/hostwarden
HOSTWARDEN_HOME ?= hostwarden-data
export HOSTWARDEN_HOME

.PHONY: run test lint typecheck unit install test-deps i18n-extract clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Create the venv, initialise ./hostwarden-data on first run, serve on 127.0.0.1:8080.
run: install
	./scripts/system-deps.sh --runtime
	$(HW) init
	$(HW) serve

test-deps: $(VENV)/.installed-test
	./scripts/system-deps.sh

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy --strict src/

unit: test-deps
	PY=$(PY) ./scripts/run-tests.sh

## Lint, types, then the whole suite on SQLite and on the local PostgreSQL.
test: lint typecheck unit

## Refresh the translation template and catalogs from the sources.
i18n-extract: $(VENV)/.installed-test
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ -o src/hostwarden/locale/messages.pot src/hostwarden
	$(VENV)/bin/pybabel update -i src/hostwarden/locale/messages.pot -d src/hostwarden/locale -N

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
