# hsm-audit developer tasks. Everything runs on a fresh clone: Python tools are
# installed into .venv/ (pinned in scripts/requirements*.txt), the local
# DynamoDB is a moto server on 127.0.0.1 (scripts/local-dynamodb.sh).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
LDB := scripts/local-dynamodb.sh
WITH_DB := scripts/with-local-dynamodb.sh

# Tools installed into the venv (cfn-lint, cargo-lambda, zig, sam) must be on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

# `make build LAMBDA_ARCH=--x86-64` builds for x86_64 where the aarch64 Rust
# target cannot be installed (the template deploys arm64).
LAMBDA_ARCH ?= --arm64
DEMO_TABLE ?= hsm-audit-demo

.PHONY: help deps deps-build deps-sam deps-browser test test-steps demo build validate deploy invoke-local clean bench

help:
	@echo "make deps          create .venv with moto[server], cfn-lint (pinned)"
	@echo "make test          fmt, template checks, clippy, cargo test against a local DynamoDB and headless Chromium"
	@echo "make demo          ingest events/ into a local DynamoDB, print the views, write .local/report.html"
	@echo "make build         cargo lambda build --release $(LAMBDA_ARCH) --bin bootstrap"
	@echo "make validate      sam validate --lint"
	@echo "make deploy        sam build && sam deploy --guided"
	@echo "make invoke-local  cargo lambda watch + invoke each events/*.json and a Kinesis batch against a local DynamoDB, check sessions, EMF, JSON logs"
	@echo "make bench         stage throughput vs the gunzip floor, DynamoDB cost per record, memory, size"
	@echo "make fuzz          decode/parse property fuzzing, HSM_AUDIT_FUZZ_CASES cases per property"
	@echo "make clean         stop the local DynamoDB, remove .local/"

deps:
	$(LDB) deps

# The report's browser check (tests/integration/report.rs): Debian's chromium, and
# playwright-core (pinned in tests/browser/package-lock.json) to drive it. Playwright's own
# browser downloads are never used. The stamp is a copy of the lock file.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
deps-browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "installing Debian's chromium (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium \
		|| { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium; }; \
	fi
	@if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.hsm-audit.stamp; then \
		echo "installing tests/browser/package-lock.json (npm ci)"; \
		cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts \
		&& cp package-lock.json node_modules/.hsm-audit.stamp; \
	fi

deps-build: deps
	$(LDB) deps scripts/requirements-build.txt

deps-sam: deps
	$(LDB) deps scripts/requirements-sam.txt

# The wrapper starts moto, exports AWS_ENDPOINT_URL, AWS_* test credentials and
# HSM_AUDIT_TEST_ENDPOINT, runs the steps, and always stops moto again.
test: deps deps-browser
	CHROMIUM=$(CHROMIUM) $(WITH_DB) $(MAKE) --no-print-directory test-steps

# Internal: the steps of `make test`, run with the local DynamoDB's environment.
test-steps:
	@echo "== cargo fmt --check"
	cargo fmt --all -- --check
	@echo "== events/ up to date"
	$(PY) events/generate.py --check
	@echo "== cfn-lint template.yaml"
	$(VENV)/bin/cfn-lint template.yaml
	@echo "== template policy checks"
	$(PY) scripts/check_template.py
	$(PY) scripts/test_check_template.py
	@echo "== cargo clippy"
	cargo clippy --all-targets -- -D warnings
	@echo "== cargo test (AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-unset})"
	cargo test --all-targets

demo: deps
	DEMO_TABLE=$(DEMO_TABLE) $(WITH_DB) scripts/demo.sh

build: deps-build
	cargo lambda build --release $(LAMBDA_ARCH) --bin bootstrap
	@echo "artifact: target/lambda/bootstrap/bootstrap ($$(stat -c %s target/lambda/bootstrap/bootstrap) bytes)"

validate: deps-sam
	AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 sam validate --lint --template template.yaml

# samconfig.toml holds the stack's settings; --guided asks for the log group (and any
# other parameter) and offers to save the answers there. Building Rust with cargo-lambda
# is no beta feature of SAM CLI 1.170 any more, so no --beta-features.
deploy: deps-sam deps-build
	sam build
	sam deploy --guided

invoke-local: deps-build
	$(WITH_DB) scripts/invoke-local.sh

clean:
	$(LDB) stop
	rm -rf .local

# Throughput of each stage as a ratio to the gunzip floor, DynamoDB requests and write
# units per record, peak memory, binary size, start-up (numbers in README.md).
bench: deps
	$(WITH_DB) scripts/bench.sh

# Property-based fuzzing of decode and parse (tests/integration/fuzz_decode.rs): `make test` runs
# 256 cases per property; this runs many more (80,000 take ~15 min on 2 cores).
# Needs no DynamoDB. A failure is written to tests/proptest-regressions/ and replayed
# by every later run; keep it (and the input, in tests/fixtures/fuzz/).
HSM_AUDIT_FUZZ_CASES ?= 20000
.PHONY: fuzz
fuzz:
	HSM_AUDIT_FUZZ_CASES=$(HSM_AUDIT_FUZZ_CASES) cargo test --test integration fuzz_decode:: -- --test-threads=2
