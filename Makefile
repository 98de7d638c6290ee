# The README's commands. `make run` sets everything up and serves the sample collection;
# `make test` runs the whole test suite, `make test-fast` its unit tier.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
PYTEST := $(BIN)/python -m pytest
export HF_HUB_OFFLINE := 1

.PHONY: install system-deps models run index-sample test test-fast test-integration test-e2e lint proto check-proto bench console-screenshots clean

# CPU PyTorch first: a bare torch requirement resolved on its own can pull a multi-GB CUDA build.
$(BIN)/.installed: proto/pyproject.toml client/pyproject.toml indexer/pyproject.toml server/pyproject.toml pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ./proto -e ./client -e ./indexer -e "./server[milvus,ray,otlp]"
	$(BIN)/pip install -q -e "./client[langchain,llama-index]"
	$(BIN)/pip install -q --group dev 2>/dev/null || $(BIN)/pip install -q pytest pytest-timeout pytest-asyncio ruff mypy "grpcio-tools==1.85.1" "protoc-gen-connectrpc==0.13.0" trustme hypothesis "openapi-spec-validator>=0.9,<0.10" "langchain-tests>=1.1,<2" "playwright>=1.50,<2"
	touch $@

install: $(BIN)/.installed

# Debian packages the tests use: a real Prometheus, docker-compose to validate the compose file,
# and chromium, the browser the console's tests drive through Playwright (never Playwright's own
# browser downloads).
system-deps:
	@if ! command -v prometheus >/dev/null || ! command -v docker-compose >/dev/null || ! test -x /usr/bin/chromium; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus docker-compose chromium >/dev/null; \
	fi

# The ONNX builds and the measured choice of the encoder new collections get (auto), once per
# machine, in ~/.cache/neardex: without it the first collection a test makes waits for them.
models: install
	$(BIN)/neardex models prepare

index-sample: install
	$(BIN)/neardex index samples/neardex-docs --collection docs --data-dir $(DATA)

run: index-sample
	$(BIN)/neardex serve --data-dir $(DATA) --port 50051 --metrics-port 50052 --http-port 8080

# Every tier, and the 25 slowest tests, so that a test growing slow shows in CI.
test: install system-deps models
	$(PYTEST) --durations=25

# The tiers are folders (tests/unit, tests/integration, tests/e2e); tests/conftest.py marks each
# test by its folder, so `pytest -m unit` selects the same tests. test-fast leaves out the unit
# tests marked slow (an int8 build, fp16 on a CPU, 80 judged questions), which `make test` runs.
test-fast: install models
	$(PYTEST) tests/unit -m "not slow"

test-integration: install models
	$(PYTEST) tests/integration

test-e2e: install system-deps models
	$(PYTEST) tests/e2e --durations=25

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

proto: install
	PATH=$(CURDIR)/$(BIN):$$PATH ./proto/generate.sh

# Fails when the committed generated code differs from what the pinned grpcio-tools makes.
check-proto: proto
	git diff --exit-code -- proto/

bench: install
	$(BIN)/python bench/indexing.py
	$(BIN)/python bench/search_latency.py

# PNGs of each view of the web console, served over the sample collection, into docs/console/.
console-screenshots: install system-deps
	$(BIN)/python docs/console/make_screenshots.py

clean:
	rm -rf $(VENV) $(DATA)
