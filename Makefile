# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench mutants clean screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/archive-vault demo --data-dir ./var

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/pytest -q -n 2 -p no:cacheprovider

# Mutation testing of the security-critical modules (not part of `make test`: it takes
# minutes). Groups and their tests: [tool.mutants] in pyproject.toml. Pick groups with
# `make mutants GROUPS="sealing tokens"`, worker processes with MUTANTS_JOBS (default 1).
mutants: $(STAMP)
	MUTANTS_JOBS=$(or $(MUTANTS_JOBS),1) $(BIN)/python tools/mutants.py $(GROUPS)

# The README's screenshots, taken by the browser tests (needs Debian's chromium).
screenshots: $(STAMP)
	VAULT_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q -p no:cacheprovider tests/web/browser

bench: $(STAMP)
	$(BIN)/python bench/store.py --quick

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
