# Ragdoll on Kubernetes — developer entry points.
#   make demo   run the runtime locally on the sample documents
#   make test   every test (formatting, lints, unit and integration tests against real Postgres)
#   make bench  benchmarks with same-run baselines
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
PG := tests/env/pg.sh
DB_URL = $$($(PG) up | sed -n 's/^DATABASE_URL=//p')

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Check the toolchain this project needs (Rust, Python 3 with pip, curl)
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
	@command -v python3 >/dev/null || { echo "python3 not found"; exit 1; }
	@python3 -m pip --version >/dev/null || { echo "pip for python3 not found"; exit 1; }
	@command -v curl >/dev/null || { echo "curl not found"; exit 1; }
	@$(CARGO) --version

.PHONY: db-up
db-up: ## Start the local PostgreSQL 18 + pgvector on 127.0.0.1:55432 and print DATABASE_URL
	@$(PG) up

.PHONY: db-down
db-down: ## Stop the local PostgreSQL
	@$(PG) down

.PHONY: build
build: tools ## Build all crates (debug)
	$(CARGO) build --workspace --all-targets

.PHONY: lint
lint: tools ## rustfmt and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: tools lint ## Every test: unit, integration (real Postgres + pgvector), CLI
	@url="$(DB_URL)"; echo "DATABASE_URL=$$url"; \
	  DATABASE_URL="$$url" $(CARGO) test --workspace

.PHONY: demo
demo: tools ## Start Postgres and the runtime, ingest tests/fixtures/documents, print their status
	$(CARGO) build -p ragdoll-runtime --bin ragdoll
	tests/env/demo.sh

.PHONY: bench
bench: tools ## Benchmarks: ingestion vs COPY; search recall, latency and QPS vs the same SQL
	@url="$(DB_URL)"; DATABASE_URL="$$url" $(CARGO) bench -p ragdoll-runtime --bench ingest --bench search
