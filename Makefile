# mailwarm: every target sets itself up from a machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

DEMO_ARGS ?= --accounts 20 --days 45 --seed 7 --strategy slow --strategy linear --strategy fast

.PHONY: demo test lint typecheck imports docs pytest mail-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[lab]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-lab

## demo: compare three ramp strategies on a simulated 20-account pool for 45 days
demo: $(VENV)/.installed-lab
	$(BIN)/mailwarm simulate $(DEMO_ARGS)

## test: lint, type-check, import contracts, docs build, and the whole test suite
test: lint typecheck imports docs pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

imports: $(VENV)/.installed-dev
	$(BIN)/lint-imports

docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

## mail-deps: Debian's Dovecot for the real mail-server tests (installed only when missing)
mail-deps:
	bash scripts/install-mail-deps.sh

pytest: $(VENV)/.installed-dev mail-deps
	$(BIN)/pytest -n 2 --nbmake tests examples

## bench: the benchmarks in benchmarks/ (not part of `make test`)
bench: $(VENV)/.installed-dev mail-deps
	$(BIN)/python benchmarks/plan_day.py
	$(BIN)/python benchmarks/simulate.py
	$(BIN)/python benchmarks/smtp_imap.py
	$(BIN)/python benchmarks/analytics.py
	$(BIN)/python benchmarks/server_load.py

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache
