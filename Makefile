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

.PHONY: help venv lint unit docker-tests test run stop status events bench
help:
	@echo "make run        start the local stack (sam local + moto + simulated Atlassian), play the protocol, leave it running"
	@echo "make run ONCE=1 the same, then stop everything and exit with the scenario's result"
	@echo "make stop       stop everything 'make run' started"
	@echo "make test       lint, type-check and run the whole test suite (what CI runs)"
	@echo "make unit       the fast part of the suite (no Docker)"
	@echo "make events     re-sign events/*.json for now (for sam local invoke -e events/...)"
	@echo "make bench      the benchmarks (prints a table)"

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

# The suite under load (issue 9, item 8): STRESS_RUNS runs of the non-Docker suite on STRESS_WORKERS workers while
# STRESS_BURNERS busy loops occupy the CPUs, stopping at the first failure. One line per run; a failed run's output
# stays in .local/stress-failed.log. The burners are this recipe's own children, killed by PID when it ends.
STRESS_RUNS ?= 10
STRESS_WORKERS ?= 4
STRESS_BURNERS ?= $(shell nproc 2>/dev/null || echo 2)
.PHONY: stress
stress: venv
	@mkdir -p .local; log=.local/stress-run.log; burners=""; \
	stop_burners() { [ -n "$$burners" ] && kill $$burners 2>/dev/null; wait $$burners 2>/dev/null; burners=""; }; \
	trap stop_burners EXIT; trap 'stop_burners; exit 130' INT TERM; \
	for i in $$(seq $(STRESS_BURNERS)); do $(PY) -c 'while True: pass' & burners="$$burners $$!"; done; \
	echo "[stress] $(STRESS_RUNS) runs of pytest -n $(STRESS_WORKERS) -m 'not docker', $(STRESS_BURNERS) CPU burners (PIDs$$burners)"; \
	status=0; started=$$(date +%s); \
	for run in $$(seq $(STRESS_RUNS)); do \
	  begin=$$(date +%s); \
	  $(VENV)/bin/pytest -q -n $(STRESS_WORKERS) -m "not docker" -p no:cacheprovider >$$log 2>&1; status=$$?; \
	  result=$$(grep -E '^=* ?[0-9]+ (passed|failed)|^[0-9]+ (passed|failed)|(passed|failed|error).* in [0-9.]+s' $$log | tail -n 1 | tr -d '='); \
	  if [ $$status -eq 0 ]; then verdict=ok; else verdict=FAILED; fi; \
	  echo "[stress] run $$run/$(STRESS_RUNS): $$verdict in $$(( $$(date +%s) - begin )) s:$$result"; \
	  if [ $$status -ne 0 ]; then \
	    cp $$log .local/stress-failed.log; grep -E '^(FAILED|ERROR) ' $$log | sed 's/^/[stress]   /'; \
	    echo "[stress] stopped at the first failure; its output: .local/stress-failed.log"; break; \
	  fi; \
	done; \
	[ $$status -eq 0 ] && echo "[stress] $(STRESS_RUNS) runs passed in $$(( $$(date +%s) - started )) s"; \
	exit $$status
