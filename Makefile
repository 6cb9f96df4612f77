# Developer and CI entry points. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
SERVE_ARGS ?=
NPM ?= npm
NODE_SDK := sdk/node
NODE_STAMP := $(NODE_SDK)/node_modules/.installed

.PHONY: venv test test-fast test-node lint cov bench demo serve

# The stamp makes `venv` a no-op until pyproject.toml or constraints.txt change.
venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[all,dev]'
	touch $@

# Without PostgreSQL installed the PG-backed tests skip locally; with CI=true they fail instead.
test: venv
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)
	$(MAKE) test-node

# The TypeScript SDK: builds it, then node's test runner against the real server from the venv.
$(NODE_STAMP): $(NODE_SDK)/package.json $(NODE_SDK)/package-lock.json
	cd $(NODE_SDK) && $(NPM) ci --no-audit --no-fund
	touch $@

test-node: venv $(NODE_STAMP)
	cd $(NODE_SDK) && FINETUNE_LAB_PYTHON="$(abspath $(PY))" $(NPM) test

# The in-process layer and pure-logic tests only (seconds; no servers started).
test-fast: venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

# What CI enforces before the tests (.ci/run): lint, formatting, types (strict on client/).
lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# The Python suite under coverage (the test servers' subprocesses included); prints the total.
# Narrow it with PYTEST_ARGS, e.g. `make cov PYTEST_ARGS=tests/unit`.
cov: venv
	$(VENV)/bin/coverage erase
	$(VENV)/bin/pytest -q --cov --cov-report= $(PYTEST_ARGS)
	@# Data of processes that outlived pytest's own combine (servers stopped at the very end).
	$(VENV)/bin/coverage combine --append -q || true
	$(VENV)/bin/coverage report
	@echo "coverage total: $$($(VENV)/bin/coverage report --format=total)%"

# Every bench/*.py script; bench/_*.py are shared helpers, not benchmarks.
bench: venv
	@set -e; shopt -s nullglob; for f in bench/*.py; do \
		case "$$(basename "$$f")" in _*) continue;; esac; \
		echo "== $$f"; $(PY) "$$f"; \
	done

demo: venv
	$(VENV)/bin/finetune-lab demo

serve: venv
	$(VENV)/bin/finetune-lab serve $(SERVE_ARGS)
