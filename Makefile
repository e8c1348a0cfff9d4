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

.PHONY: help venv lint unit docker-tests test run stop reset reload watch logs call invoke status events bench \
	template manifest stress build deploy sam
help:
	@echo "The local loop (the stack: sam local start-api + moto + a simulated Atlassian, on http://127.0.0.1:3000):"
	@echo "  make run          start the stack (or reuse it), play the protocol, leave the local test tenant installed"
	@echo "  make run ONCE=1   the same, then stop everything; exits with the scenario's result"
	@echo "  make reload       after an edit: build; restart start-api only if routes or settings changed"
	@echo "  make watch        reload by itself whenever a function, the library or the template changes"
	@echo "  make call GET /pages/hello   a signed request as the local test tenant (CONTEXT=1: a context token)"
	@echo "  make call POST /forge/hello FORGE=1   a Forge Remote call: a Forge invocation token, user and system tokens"
	@echo "  make logs         one line per request (route, function, outcome, reason), followed (RAW=1: sam's own)"
	@echo "  make invoke FUNCTION=AuthorizerFunction EVENT=events/authorizer-page.json   sam local invoke, local build"
	@echo "  make events       re-sign events/*.json for now"
	@echo "  make reset        empty the local tables, install the local test tenant again"
	@echo "  make status       what runs;  make stop   stop everything make run started"
	@echo "Tests and tools:"
	@echo "  make test         lint, type-check and run the whole test suite (what CI runs);  make unit   no Docker"
	@echo "  make bench        the benchmarks (ARGS='--quick', ARGS='--only warm')"
	@echo "  make stress       the non-Docker suite ten times under load (STRESS_RUNS, STRESS_WORKERS), stopping at a failure"
	@echo "The app:"
	@echo "  make template     regenerate template.yaml's app functions, routes and IAM from the app's declaration"
	@echo "  make manifest BASE_URL=https://... FORGE_APP_ID=...   the Forge manifest.yml of a deployment"
	@echo "AWS:"
	@echo "  make build        sam build for AWS (arm64) into .aws-sam/build;  make deploy   build, then sam deploy --guided"
	@echo "  make sam ARGS='validate --lint'   any sam command, with the SAM CLI this project installs"

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

# the local stack: Docker, the SAM CLI and the Lambda image first (scripts/local-env.sh), then devstack
run: venv template
	@set -o pipefail; $(LOCAL_ENV) up | { grep -v '^export ' || true; }
	@$(WITH_SAM) $(PY) -m devstack run $(if $(ONCE),--once); status=$$?; \
	  if [ -n "$(ONCE)" ]; then $(LOCAL_ENV) down; fi; exit $$status

reload: venv
	@$(MAKE) --no-print-directory template
	@$(WITH_SAM) $(PY) -m devstack reload

watch: venv
	@$(WITH_SAM) $(PY) -m devstack watch

reset: venv
	@$(WITH_SAM) $(PY) -m devstack reset

stop:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi
	@$(LOCAL_ENV) down

status: venv
	@$(PY) -m devstack status; $(LOCAL_ENV) status

logs: venv
	@$(PY) -m devstack logs $(if $(filter 0 no false,$(FOLLOW)),--no-follow) $(if $(RAW),--raw) $(if $(N),-n $(N))

# make call GET /pages/hello: the words after `call` are its arguments, not targets
ifeq (call,$(firstword $(MAKECMDGOALS)))
  CALL_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  $(eval $(CALL_ARGS):;@:)
endif
call: venv
	@$(PY) -m devstack call $(CALL_ARGS) $(ARGS) $(if $(CONTEXT),--context) $(if $(FORGE),--forge) $(if $(TOKEN),--as $(TOKEN)) \
	  $(if $(QUERY),--token-in-query) $(if $(DATA),--data '$(DATA)')

invoke: venv
	@test -n "$(FUNCTION)" && test -n "$(EVENT)" || \
	  { echo "usage: make invoke FUNCTION=AuthorizerFunction EVENT=events/authorizer-page.json"; exit 2; }
	@$(WITH_SAM) $(PY) -m devstack invoke $(FUNCTION) $(EVENT)

events: venv
	@$(PY) -m devstack resign-events

bench: venv
	$(PY) -m bench $(ARGS)

# AWS: sam build (for the template's Architecture, arm64 by default) into .aws-sam/build, which the local stack
# never reads (it builds into .local/stack/build), then sam deploy
build:
	$(LOCAL_ENV) sam build $(ARGS)

deploy: build
	$(LOCAL_ENV) sam deploy --guided $(ARGS)

sam:
	$(LOCAL_ENV) sam $(ARGS)

# template.yaml's app functions, routes and IAM, regenerated from the app's declaration (layers/app/connect_app);
# make run, make reload and make watch run it before every build
template: venv
	@$(PY) -m connect_lambda.app.template

# the Forge manifest.yml of a deployment: make manifest BASE_URL=https://... FORGE_APP_ID=<ari or uuid> [APP_KEY=...]
manifest: venv
	@test -n "$(BASE_URL)" && test -n "$(FORGE_APP_ID)" || { echo "usage: make manifest BASE_URL=https://your.app FORGE_APP_ID=<forge app id> [APP_KEY=connect-lambda-sample]"; exit 2; }
	$(PY) -m connect_lambda.app.manifest --base-url "$(BASE_URL)" --forge-app-id "$(FORGE_APP_ID)" --app-key "$(or $(APP_KEY),connect-lambda-sample)"

# The suite under load (issue 9, item 8): STRESS_RUNS runs of the non-Docker suite on STRESS_WORKERS workers while
# STRESS_BURNERS busy loops occupy the CPUs, stopping at the first failure. One line per run; a failed run's output
# stays in .local/stress-failed.log. The burners are this recipe's own children, killed by PID when it ends.
STRESS_RUNS ?= 10
STRESS_WORKERS ?= 4
STRESS_BURNERS ?= $(shell nproc 2>/dev/null || echo 2)
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
