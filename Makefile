# Two commands do everything on a fresh machine: `make up` (run it) and `make test` (test it).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)

.PHONY: install up demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV)"; python3 -m venv $(VENV); }
	@echo "installing taskledger and its dependencies into $(VENV) (first run: about a minute)"
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

up: install  ## embedded PostgreSQL + Redis (from wheels), worker, beat; Ctrl-C stops all
	$(VENV)/bin/taskledger up

demo: install
	$(VENV)/bin/taskledger demo

test: install  ## the whole suite; it starts its own throwaway PostgreSQL and Redis
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
