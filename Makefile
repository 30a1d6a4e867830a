# Two commands do everything on a fresh machine: `make up` (run it) and `make test` (test it).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)

.PHONY: install up demo services test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

up: install  ## run worker + beat; embedded SQLite + local broker unless TASKLEDGER_* say otherwise
	$(VENV)/bin/taskledger up

demo: install
	$(VENV)/bin/taskledger demo

services:
	bash scripts/ensure-services.sh

test: install services  ## the whole suite against real Postgres, Redis and celery workers
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install services
	$(PY) bench/drain.py

clean:
	rm -rf $(VENV) .taskledger .mypy_cache .ruff_cache
