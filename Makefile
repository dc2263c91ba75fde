# mailwarm: every target sets itself up from a machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

DEMO_PORT ?= 8000
DEMO_DB   := $(abspath $(VENV))/demo.db
SIMULATE_ARGS ?= --accounts 20 --days 45 --seed 7 --strategy slow --strategy linear --strategy fast

.PHONY: demo simulate test lint typecheck imports docs pytest mail-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[lab]"
	touch $@

$(VENV)/.installed-server: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[server]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-lab $(VENV)/.installed-server

## demo: the server on the embedded default (SQLite, in-process scheduler) with a demo pool
## of six mailboxes on the in-memory mail network warming up at 120x speed; Ctrl-C stops it.
## Each run starts from a fresh demo database, so the owner's sign-in is printed every time.
demo: $(VENV)/.installed-server
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	MAILWARM_DEMO=true $(BIN)/mailwarm serve --port $(DEMO_PORT) --database sqlite:///$(DEMO_DB)

## simulate: the strategy lab compares three ramp strategies on a 20-account pool for 45 days
simulate: $(VENV)/.installed-lab
	$(BIN)/mailwarm simulate $(SIMULATE_ARGS)

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
