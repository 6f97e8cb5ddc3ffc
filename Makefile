# imagepipe — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
BUF    := node_modules/.bin/buf
PROTOS := $(wildcard protos/imagepipe/v1/*.proto)
GEN    := imagepipe/v1
STAMP_PY  := $(VENV)/.installed
STAMP_GEN := $(GEN)/.generated
# The contract and the client as projects of their own (their wheels: `make dist`).
PACKAGES  := packages/contract/pyproject.toml packages/client/pyproject.toml
# The one protoc invocation, shared with the contract wheel's build (packages/).
GENERATE  := packages/contract/generate.py

.PHONY: help install proto dist lint test test-unit test-contract test-integration test-faults fuzz \
        chaos run stop status bench bench-http-tools bench-http-stacks bench-delivery bench-catalog-scale migrate \
        breaking clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP_PY): pyproject.toml $(PACKAGES) constraints.txt scripts/install.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh
	@touch $@

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	@touch $@

install: $(STAMP_PY) ## create .venv and install imagepipe with its dev tools

$(STAMP_GEN): $(PROTOS) $(STAMP_PY) $(GENERATE) Makefile
	$(PY) $(GENERATE) .
	@touch $@

proto: $(STAMP_GEN) ## generate Python modules, .pyi and typed gRPC stubs from protos/

# Without build isolation: the dev venv has the build tools, so no network is needed.
dist: $(STAMP_PY) ## the contract and client wheels, into dist/ (the contract generated from protos/)
	@rm -f dist/imagepipe_contract-*.whl dist/imagepipe_client-*.whl
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist packages/contract packages/client
	@ls -l dist/imagepipe_contract-*.whl dist/imagepipe_client-*.whl

lint: $(STAMP_GEN) $(BUF) ## ruff, mypy --strict, import contracts, buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy packages/build_hook.py $(GENERATE)
	$(VENV)/bin/lint-imports
	$(BUF) lint

breaking: $(BUF) ## buf breaking against origin/main (or main)
	$(BUF) breaking --against ".git#branch=$$(git rev-parse --abbrev-ref origin/main >/dev/null 2>&1 && echo origin/main || echo main)"

test: lint ## lint, then every test against the real servers
	$(PY) -m pytest

test-unit: $(STAMP_GEN) ## unit tests only (no servers)
	$(PY) -m pytest tests/unit

test-contract: $(STAMP_GEN) ## every RPC through the generated stubs
	$(PY) -m pytest tests/contract

test-integration: $(STAMP_GEN) ## end-to-end tests on the real servers
	$(PY) -m pytest tests/integration

test-faults: $(STAMP_GEN) ## fault-injection tests alone
	$(PY) -m pytest tests/faults

fuzz: $(STAMP_GEN) ## fuzz every RPC of a fresh stack (FUZZ_CASES=5000 FUZZ_SEED=15 FUZZ_ONLY=i,j)
	$(PY) -m tests.fuzz

run: $(STAMP_GEN) ## set up from nothing, start the stack, push sample images through, print the result
	bash scripts/ensure-servers.sh
	$(PY) -m devstack run

stop: ## stop what `make run` started, and whatever those processes left behind
	@if [ -x $(PY) ]; then $(PY) -m devstack stop; else echo "nothing was running"; fi

status: ## which processes of the local stack are running
	$(PY) -m devstack status

bench: $(STAMP_GEN) bench-http-tools ## every benchmark (prints tables and `summary:` lines; slow)
	bash scripts/ensure-servers.sh
	$(PY) -m bench.render
	$(PY) -m bench.upload
	$(PY) -m bench.e2e
	$(PY) -m bench.scale
	$(PY) -m bench.quality_target
	$(PY) -m bench.similar
	$(PY) -m bench.timings
	$(PY) -m bench.http_stacks
	$(PY) -m bench.delivery

AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo -n)
APT_GET := $(AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get
# What bench/http_stacks.py drives and compares, installed when missing: Debian's wrk
# (package lists refreshed only when the install fails) and the `bench` extra's servers.
bench-http-tools: $(STAMP_GEN)
	@command -v wrk >/dev/null || { echo "installing wrk"; \
	  $(APT_GET) install -y -qq --no-install-recommends wrk >/dev/null 2>&1 \
	  || { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends wrk >/dev/null; }; }
	@$(PY) -c 'import granian, httptools, uvicorn, uvloop' 2>/dev/null \
	  || PYTHON=$(PYTHON) VENV=$(VENV) EXTRAS=dev,bench bash scripts/install.sh

# IMAGEPIPE_BENCH_HTTP_SECONDS=2 for a smoke run (about three minutes; a full one takes eight).
bench-http-stacks: bench-http-tools ## delivery's HTTP stack: aiohttp beside uvicorn and granian under wrk (a few minutes)
	$(PY) -m bench.http_stacks

bench-delivery: bench-http-tools ## delivery beside presigned S3 GETs under wrk: warm and cold caches (a few minutes)
	bash scripts/ensure-servers.sh
	$(PY) -m bench.delivery

SIZES ?= 1000000,10000000
# Not part of `make bench`: 10 M assets need about an hour and tens of GB of disk.
bench-catalog-scale: $(STAMP_GEN) ## every tenant RPC at 1 M and 10 M assets beside 100 (SIZES=1000000 for 1 M only)
	bash scripts/ensure-servers.sh
	$(PY) -m bench.catalog_scale --sizes $(SIZES)

SEEDS ?= 5
CHAOS_PROFILE ?= full
# Needs PostgreSQL only: the run starts (and always stops) its own RabbitMQ node.
chaos: $(STAMP_GEN) ## seeded fault schedules during 220 uploads: SEEDS=N (1..N), SEEDS="3 7", SEED=7
	$(PY) -m tests.chaos --seeds "$(if $(SEED),$(SEED)-$(SEED),$(SEEDS))" --profile $(CHAOS_PROFILE)

migrate: $(STAMP_GEN) ## apply catalog migrations to IMAGEPIPE_DATABASE_URL
	$(PY) -m services.catalog migrate

clean: ## stop the local stack, drop its database and queues, remove generated code, the venv, var/ and dist/
	@if [ -x $(PY) ]; then $(PY) -m devstack destroy || true; fi
	rm -rf $(GEN) $(VENV) var dist node_modules .pytest_cache .mypy_cache .ruff_cache
