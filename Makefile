# Developer and CI entry points. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
SERVE_ARGS ?=

.PHONY: venv test lint bench demo serve

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

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

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
