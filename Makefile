# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test py-tests test-js js-deps js-suite lint ruff mypy bench clean system-deps
JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv resolves and downloads in parallel: the dev install takes about a fifth of pip's time on
# a fresh machine. Where PYTHONDONTWRITEBYTECODE is set it byte-compiles everything at
# install, or every test process would compile its imports again; elsewhere each module is
# compiled on first import (the suite imports a fraction of what is installed).
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python $(if $(PYTHONDONTWRITEBYTECODE),--compile-bytecode)
$(BIN)/uv: $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv>=0.8"

$(STAMP): $(BIN)/uv pyproject.toml
	$(UV) -e . --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m flagstone.demo

# The Python install and ruff run beside the Debian packages and npm ci (network and disk
# bound); mypy (one core, ~20 s without a cache) runs beside pytest. The TypeScript suite
# runs alone: its browser and polling tests wait on real timers.
test:
	@$(MAKE) --no-print-directory -j2 ruff js-deps
	@$(MAKE) --no-print-directory -j2 --output-sync=target mypy py-tests
	@$(MAKE) --no-print-directory test-js

# The package is byte-compiled once for the hundreds of CLI processes the tests start.
# Tests marked slow start first (tests/conftest.py) and an idle worker takes half of the
# other's queue (worksteal), so both workers finish together.
py-tests: $(STAMP)
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest -q -n auto --dist worksteal

# The TypeScript runtime: npm ci when node_modules is missing or stale, then Vitest (the
# shared conformance vectors, React, OpenFeature, codegen type checks, a real browser).
$(JS_STAMP): $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js-deps: system-deps
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(JS_STAMP); fi

test-js: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory js-suite; \
	elif [ -n "$$CI" ]; then echo "error: the TypeScript tests need Node 18+ and npm" >&2; exit 1; \
	else echo "note: skipping the TypeScript tests; install Node 18+ and npm (sudo apt-get install nodejs npm)" >&2; fi

js-suite: $(JS_STAMP)
	cd $(JS) && npx tsc -p tsconfig.json
	cd $(JS) && FLAGSTONE_PYTHON=$(CURDIR)/$(BIN)/python npx vitest run
	cd $(JS) && npm run --silent build >/dev/null && node test/package-smoke.mjs

lint: ruff mypy

ruff: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check --quiet src tests bench

mypy: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(UV) -e . --group dev --group bench
	$(BIN)/python bench/run.py

system-deps:
	@scripts/system-deps.sh

clean:
	rm -rf $(VENV) dist bench/.work
