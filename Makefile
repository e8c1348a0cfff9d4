# connect-lambda: the two commands a fresh machine needs (see README.md).
#   make run    install what is needed, start the local stack, play the Connect protocol against it
#   make test   the whole test suite (what .ci/run calls)
SHELL := /bin/bash
.DEFAULT_GOAL := help

# pyenv's 3.13 build if there is one (a pyenv shim on PATH errors when 3.13 is not selected), else python3.13 on PATH
PYTHON313 ?= $(shell p=$$(pyenv prefix 3.13.0 2>/dev/null)/bin/python3.13; [ -x "$$p" ] && echo $$p || { python3.13 -c '' 2>/dev/null && command -v python3.13; })
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv lint test unit run stop
help:
	@echo "make run   - start the local stack (sam local + moto + simulated Atlassian) and play the protocol"
	@echo "make stop  - stop everything 'make run' started"
	@echo "make test  - lint, type-check and run the whole test suite (what CI runs)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON313)" && test -x "$(PYTHON313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13.0) or set PYTHON313=/path/to/python3.13"; exit 1; }
	@echo "[venv] creating $(VENV) with $(PYTHON313) and installing pinned dependencies"; start=$$(date +%s); \
	  $(PYTHON313) -m venv $(VENV) && $(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' \
	  && echo "[venv] ready in $$(( $$(date +%s) - start )) s"
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q -n 2 -m "not docker"

test: lint
	$(VENV)/bin/pytest -q -n 2
