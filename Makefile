# connect-lambda: the two commands a fresh machine needs (README.md).
#   make run    install what is needed, start the local stack, play the Connect protocol against it
#   make test   the whole test suite (what .ci/run calls)
SHELL := /bin/bash
.DEFAULT_GOAL := help

# pyenv's 3.13 build if there is one (a pyenv shim on PATH errors when 3.13 is not selected), else python3.13 on PATH
PYTHON313 ?= $(shell p=$$(pyenv prefix 3.13.0 2>/dev/null)/bin/python3.13; [ -x "$$p" ] && echo $$p || { python3.13 -c '' 2>/dev/null && command -v python3.13; })
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCAL_ENV := bash scripts/local-env.sh
WITH_SAM := eval "$$($(LOCAL_ENV) env)" &&

.PHONY: help venv lint unit docker-tests test run stop status events bench template manifest
help:
	@echo "make run        start the local stack (sam local + moto + simulated Atlassian), play the protocol, leave it running"
	@echo "make run ONCE=1 the same, then stop everything and exit with the scenario's result"
	@echo "make stop       stop everything 'make run' started"
	@echo "make test       lint, type-check and run the whole test suite (what CI runs)"
	@echo "make unit       the fast part of the suite (no Docker)"
	@echo "make events     re-sign events/*.json for now (for sam local invoke -e events/...)"
	@echo "make bench      the benchmarks (prints a table)"
	@echo "make template   regenerate template.yaml's app functions from the app's declaration"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON313)" && test -x "$(PYTHON313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13.0) or set PYTHON313=/path/to/python3.13"; exit 1; }
	@echo "[venv] creating $(VENV) with $(PYTHON313) and installing the pinned dependencies ..."; start=$$(date +%s); \
	  $(PYTHON313) -m venv $(VENV) && $(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' ; \
	  test $${PIPESTATUS[0]} -eq 0 && echo "[venv] ready in $$(( $$(date +%s) - start )) s"
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q -n 2 -m "not docker"

# the Docker part: sam validate/build/local invoke/start-api; local-env installs Docker and SAM if needed
docker-tests: venv
	$(LOCAL_ENV) up
	$(WITH_SAM) $(VENV)/bin/pytest -q -m docker; status=$$?; $(LOCAL_ENV) down; exit $$status

test: lint unit docker-tests

run: venv
	$(LOCAL_ENV) up
	$(WITH_SAM) $(PY) -m devstack up
	@if [ -n "$(ONCE)" ]; then \
	  $(PY) -m devstack scenario; status=$$?; $(PY) -m devstack down; $(LOCAL_ENV) down; exit $$status; \
	else \
	  $(PY) -m devstack scenario --keep-tenant; \
	  echo "[stack] still running: API http://127.0.0.1:3000, logs in .local/stack/logs; stop it with: make stop"; \
	fi

stop:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi
	$(LOCAL_ENV) down

status: venv
	$(PY) -m devstack status; $(LOCAL_ENV) status

events: venv
	$(PY) -m devstack resign-events

bench: venv
	$(PY) -m bench

# template.yaml's app functions, routes and IAM, regenerated from the app's declaration (layers/app/connect_app)
template: venv
	$(PY) -m connect_lambda.app.template

# the Forge manifest.yml of a deployment: make manifest BASE_URL=https://... FORGE_APP_ID=<ari or uuid> [APP_KEY=...]
manifest: venv
	@test -n "$(BASE_URL)" && test -n "$(FORGE_APP_ID)" || { echo "usage: make manifest BASE_URL=https://your.app FORGE_APP_ID=<forge app id> [APP_KEY=connect-lambda-sample]"; exit 2; }
	$(PY) -m connect_lambda.app.manifest --base-url "$(BASE_URL)" --forge-app-id "$(FORGE_APP_ID)" --app-key "$(or $(APP_KEY),connect-lambda-sample)"
