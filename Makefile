# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-js js-suite lint bench clean system-deps
JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m flagstone.demo

test: lint system-deps
	$(BIN)/python -m pytest -q -n auto
	@$(MAKE) --no-print-directory test-js

# The TypeScript runtime: npm ci when node_modules is missing or stale, then Vitest (the
# shared conformance vectors, React, OpenFeature, codegen type checks, a real browser).
$(JS_STAMP): $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test-js: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory js-suite; \
	elif [ -n "$$CI" ]; then echo "error: the TypeScript tests need Node 18+ and npm" >&2; exit 1; \
	else echo "note: skipping the TypeScript tests; install Node 18+ and npm (sudo apt-get install nodejs npm)" >&2; fi

js-suite: $(JS_STAMP)
	cd $(JS) && npx tsc -p tsconfig.json
	cd $(JS) && FLAGSTONE_PYTHON=$(CURDIR)/$(BIN)/python npx vitest run
	cd $(JS) && npm run --silent build >/dev/null && node test/package-smoke.mjs

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check --quiet src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e . --group dev --group bench
	$(BIN)/python bench/run.py

system-deps:
	@scripts/system-deps.sh

clean:
	rm -rf $(VENV) dist bench/.work
