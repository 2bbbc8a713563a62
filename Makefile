# The two commands a newcomer runs: `make demo` and `make test`. Both set up .venv first.
SHELL := /usr/bin/env bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEMPLATES := lambda-auto-repair-main.yaml lambda-auto-repair-functions.yaml lambda-auto-repair-monitoring.yaml lambda-auto-repair-member.yaml
SCRIPTS := deploy.sh validate-deployment.sh $(wildcard scripts/*.sh)

.PHONY: setup demo test lint unit functional e2e bench clean

setup: $(STAMP)

$(STAMP): requirements-dev.txt requirements-lambda.txt pyproject.toml
	@echo "==> setting up $(VENV) (pinned tools from requirements-dev.txt)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

demo: setup
	@$(BIN)/auto-repair demo

lint: setup
	@echo "==> cfn-lint"
	@$(BIN)/cfn-lint $(TEMPLATES)
	@echo "==> checkov"
	@# offline and quiet: no Prisma Cloud download, no update check; skips live in the templates with a reason
	@CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE $(BIN)/checkov --quiet --compact --skip-download \
		--framework cloudformation $(addprefix -f ,$(TEMPLATES))
	@echo "==> shellcheck"
	@$(BIN)/shellcheck $(SCRIPTS)
	@echo "==> ruff"
	@$(BIN)/ruff check src tools tests bench
	@echo "==> mypy"
	@$(BIN)/mypy src

unit: setup
	@$(BIN)/pytest -q tests/unit

functional: setup
	@$(BIN)/pytest -q tests/functional

e2e: setup
	@$(BIN)/pytest -q tests/e2e

# Three workers (whole modules each; each worker deploys its own local cloud once): the e2e modules mostly wait on
# verification timers and alarm periods, so a third worker on the 2-core CI machine keeps the suite under 15 minutes.
# --no-loadscope-reorder keeps tests/conftest.py's order (longest e2e modules first) instead of xdist's (most tests
# first, which started the slowest two-test e2e modules last).
test: lint
	@echo "==> pytest"
	@$(BIN)/pytest -q -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder tests

bench: setup
	@for b in bench/bench_*.py; do echo "==> $$b"; $(BIN)/python "$$b" || exit 1; done

clean:
	rm -rf .build .local-cloud .pytest_cache
