# lakesync: one command each for set-up, demo, UI, tests, lint and benchmarks.
# Everything a target needs is installed by the Makefile itself (uv into .tools/, the locked
# dependencies into .venv/, the Dagster instance into .dagster/).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := demo
PORT ?= 3000

export DAGSTER_HOME := $(CURDIR)/.dagster
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
# `make dev` uses $LAKESYNC_CONFIG if set, else ./lakesync.yaml if there is one, else the demo's.
DEV_CONFIG := $(or $(LAKESYNC_CONFIG),$(if $(wildcard lakesync.yaml),$(CURDIR)/lakesync.yaml,$(CURDIR)/$(DEMO_DIR)/lakesync.yaml))

.DEFAULT_GOAL := help
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help setup setup-test demo demo-cloud dev test lint format bench clean browser

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools/uv uv==$(UV_VERSION)

# What the product needs (make demo, make dev), then what the tests, lint and benchmarks add.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --no-dev --inexact --python $(PYTHON)
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

# The tests' Azure server (azurite) is an npm package: Node.js is installed with apt when missing.
NPM := $(or $(shell command -v npm 2>/dev/null),/usr/bin/npm)
$(NPM):
	@echo "Installing Node.js and npm (Debian's) for the tests' Azure emulator"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null

node_modules/.installed: package.json package-lock.json | $(NPM)
	$(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
$(CHROMIUM):
	@echo "Installing Debian's chromium for the browser tests"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

# The tests' Dagster instance on Postgres runs a private cluster of Debian's postgresql (initdb).
POSTGRES := $(or $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb)),/usr/lib/postgresql/initdb)
$(POSTGRES):
	@echo "Installing Debian's postgresql for the tests' Dagster instance on Postgres"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null

# The tests' Celery workers use Debian's redis-server as their broker.
REDIS := /usr/bin/redis-server
$(REDIS):
	@echo "Installing Debian's redis-server for the tests' Celery workers"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null

browser: $(CHROMIUM) ## install Debian's chromium (for the browser tests; needs apt)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@ln -sf ../dagster.yaml $@

setup: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml ## create .venv (the locked runtime dependencies) and the local Dagster instance

setup-test: setup $(VENV)/.dev-installed node_modules/.installed $(CHROMIUM) $(POSTGRES) $(REDIS) ## add the test tooling: pytest, mypy, moto, Node.js + azurite, chromium, postgresql, redis

demo: setup ## generate three demo lakes, sync them into the lakehouse, print the summary
	@$(BIN)/lakesync demo --dir $(DEMO_DIR) --reset
	@echo
	@$(BIN)/lakesync sync --config $(DEMO_DIR)/lakesync.yaml
	@echo
	@echo "Open the Dagster UI on the demo: make dev  (then http://127.0.0.1:3000)"

demo-cloud: setup-test ## the demo spread over S3, Azure and GCS emulators, synced into a lakehouse on the S3 emulator
	@$(BIN)/python -m lakesync.demo.cloud --dir demo-cloud

dev: setup ## dagster dev on 127.0.0.1:3000, or PORT=... (asset graph, sensors, runs)
	@test -f "$(DEV_CONFIG)" || $(BIN)/lakesync demo --dir $(DEMO_DIR)
	@# From the instance's folder, so Dagster reads the dagster.yaml it says it reads; `dagster dev`
	@# rather than `dg dev`, which names the code location after the checkout's folder.
	cd $(DAGSTER_HOME) && LAKESYNC_CONFIG=$(DEV_CONFIG) PYTHONWARNINGS='ignore:Function `dev_command` is superseded' \
		$(CURDIR)/$(BIN)/dagster dev -h 127.0.0.1 -p $(PORT) -w $(CURDIR)/workspace.yaml

test: setup-test ## run the test suite (browser tests included), on two workers (a test file each at a time)
	$(BIN)/pytest -n 2 --dist loadfile

lint: setup-test ## format check, lint, and strict type check
	$(BIN)/ruff format --check lakesync lakesync_tests bench
	$(BIN)/ruff check lakesync lakesync_tests bench
	$(BIN)/mypy lakesync

format: setup-test ## format the code and apply safe lint fixes
	$(BIN)/ruff format lakesync lakesync_tests bench
	$(BIN)/ruff check --fix lakesync lakesync_tests bench

bench: setup-test ## lakesync beside its floors: ingestion (parquet, CSV, JSON lines), merge tables, many datasets, small files, sensor ticks, live-sync latency, the CLI; tables + bench/results/*.json
	$(BIN)/python -m bench.run

clean: ## remove the venv, the Dagster instance, the demo and caches
	rm -rf $(VENV) .tools node_modules $(DAGSTER_HOME) $(DEMO_DIR) demo-cloud .pytest_cache .mypy_cache .ruff_cache bench/data
