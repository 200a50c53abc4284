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
MODEL_DIR = $$(tests/env/models.sh | sed -n 's/^RAGDOLL_MODEL_DIR=//p')

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Check the toolchain this project needs (Rust, Python 3 with pip, curl)
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
	@command -v python3 >/dev/null || { echo "python3 not found"; exit 1; }
	@python3 -m pip --version >/dev/null || { echo "pip for python3 not found"; exit 1; }
	@command -v curl >/dev/null || { echo "curl not found"; exit 1; }
	@command -v go >/dev/null || { echo "go not found: the test control plane is built from Go modules"; exit 1; }
	@command -v openssl >/dev/null || { echo "openssl not found"; exit 1; }
	@$(CARGO) --version

.PHONY: db-up
db-up: ## Start the local PostgreSQL 18 + pgvector on 127.0.0.1:55432 and print DATABASE_URL
	@$(PG) up

.PHONY: models
models: ## Fetch the local embedding model (all-MiniLM-L6-v2) and print RAGDOLL_MODEL_DIR
	@tests/env/models.sh

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
test: tools lint ## Every test: unit, integration (real Postgres + pgvector), operator e2e (real kube-apiserver)
	$(CARGO) build --workspace --bins
	@url="$(DB_URL)"; model="$(MODEL_DIR)"; echo "DATABASE_URL=$$url RAGDOLL_MODEL_DIR=$$model"; \
	  DATABASE_URL="$$url" RAGDOLL_MODEL_DIR="$$model" $(CARGO) test --workspace

.PHONY: cluster-up
cluster-up: tools ## Start the local control plane (etcd, kube-apiserver, controller-manager; built on first use)
	@tests/controlplane/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local control plane
	@tests/controlplane/down.sh

.PHONY: generate
generate: tools ## Regenerate the CRD copies, golden files and manifests/install.yaml from the Rust types and chart
	RAGDOLL_UPDATE_GENERATED=1 $(CARGO) test -p ragdoll-crds checked_in_crd_copies_are_current
	RAGDOLL_UPDATE_GENERATED=1 $(CARGO) test -p ragdoll-operator golden_files_of_the_examples
	RAGDOLL_UPDATE_GENERATED=1 $(CARGO) test -p ragdoll-e2e --test helm install_manifest_is_generated_from_the_chart

.PHONY: demo
demo: tools ## Start Postgres and the runtime, ingest tests/fixtures/documents, print their status
	$(CARGO) build -p ragdoll-runtime --bin ragdoll
	tests/env/demo.sh

.PHONY: bench
bench: tools ## Benchmarks: ingestion vs COPY; search recall, latency and QPS vs the same SQL; local model pipeline vs model alone
	@url="$(DB_URL)"; model="$(MODEL_DIR)"; \
	  DATABASE_URL="$$url" RAGDOLL_MODEL_DIR="$$model" $(CARGO) bench -p ragdoll-runtime --bench ingest --bench search
