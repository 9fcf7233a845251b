# ptf-admin developer entry points. `make run` and `make test` do all set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := gen/.stamp
VENV_STAMP := $(VENV)/.installed

.PHONY: all gen run observe test lint pytest bench clean check-thresholds k8s-check tools

all: $(GEN_STAMP)

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	touch $@

# Generated protobuf/gRPC code (with .pyi stubs) lives in gen/, never in git.
gen: $(GEN_STAMP)
$(GEN_STAMP): $(PROTOS) $(VENV_STAMP)
	rm -rf gen && mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=gen --pyi_out=gen \
		--grpc_python_out=gen --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
		--mypy_grpc_out=gen $(PROTOS)
	find gen -type d -exec sh -c 'touch "$$0/__init__.py"' {} \;
	rm -f gen/__init__.py
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

run: $(GEN_STAMP)
	$(VENV)/bin/ptf-stack

# Prometheus with our scrape config and alert rules against `make run`'s stack.
observe:
	scripts/observe.sh

lint: $(GEN_STAMP) check-thresholds
	$(VENV)/bin/ruff check services tests bench
	$(VENV)/bin/ruff format --check services tests bench
	$(VENV)/bin/mypy

# Thresholds are defined only in the config module (docs/SPEC.md §2, docs/seeds/002.txt §2.1).
check-thresholds:
	scripts/check-threshold-constants.sh services

# Debian tools the tests run (prometheus and promtool, kubectl, chromium); installed when missing.
tools:
	scripts/ensure-debian-tools.sh promtool=prometheus prometheus=prometheus kubectl=kubectl \
		chromium=chromium

pytest: $(GEN_STAMP) tools
	$(PY) -m pytest

# Every kustomize overlay rendered and each object validated offline against the
# Kubernetes schemas that kubernetes-validate ships (no cluster needed).
K8S_VERSION := 1.30.0
k8s-check: $(VENV_STAMP) tools
	@set -e; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for overlay in deploy/k8s/overlays/*/; do \
		kubectl kustomize "$$overlay" > "$$out/$$(basename "$$overlay").yaml"; \
	done; \
	$(VENV)/bin/kubernetes-validate -k $(K8S_VERSION) --strict --quiet "$$out"/*.yaml; \
	echo "k8s-check: $$(ls "$$out" | sed 's/.yaml//' | tr '\n' ' ')valid against Kubernetes $(K8S_VERSION)"

test: lint k8s-check pytest

bench: $(GEN_STAMP)
	$(PY) -m bench

clean:
	rm -rf gen $(VENV) .data .mypy_cache .ruff_cache .pytest_cache .hypothesis
