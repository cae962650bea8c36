# fedsyn developer entry points. `make test` and `make demo` install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

.PHONY: install install-bench test test-all demo certs clean

install: $(STAMP)

# torch is installed first, pinned to the release this project is developed and benchmarked with
# (its wheels sit in the local wheel cache of our machines); pyproject.toml itself accepts any torch >= 2.2.
# The venv's activate script turns off Flower's runtime dependency installation, so the local SuperLink
# that `flwr run .` starts never installs another torch for the app (README, "flwr run .").
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -e ".[dev]"
	echo 'export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1  # fedsyn Makefile: flwr run keeps the venv torch' >> $(BIN)/activate
	touch $(STAMP)

# The benchmarks' extra: breaching, the reference attack of benchmarks/attack_quality.py --reference.
install-bench: $(STAMP)
	$(BIN)/pip install -e ".[dev,bench]"

test: $(STAMP)
	$(BIN)/pytest

test-all: $(STAMP)
	$(BIN)/pytest -m ""

demo: $(STAMP)
	$(BIN)/fedsyn quickstart --out results/quickstart

# Test credentials of the secure deployment (docker-compose.yml): a CA, the SuperLink's certificate and one
# key pair per SuperNode, into ./certs (kept out of git and of the image). Refuses to overwrite.
SUPERNODES ?= 2
certs: $(STAMP)
	$(BIN)/python -m fedsyn.federation.certs certs --supernodes $(SUPERNODES)

clean:
	rm -rf $(VENV) results .pytest_cache
