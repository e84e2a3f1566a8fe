# Parley: `make run` installs everything and starts the app; `make test` installs everything and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# llama-cpp-python builds from source (5-8 minutes, once: pip caches the wheel). A portable build:
# a native build on CPUs that report AMX/AVX-512 segfaults in llama_decode on the first token.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
ARGS ?=

.PHONY: run test lint clean chromium postgresql redis haproxy bench

run: $(VENV)/.installed-embedded
	$(PY) app.py $(ARGS)

test: $(VENV)/.installed-embedded-test chromium postgresql redis haproxy
	$(PY) -m pytest $(ARGS)

# The benchmarks: streaming into a browser, Parley against baseline chat UIs (bench/streaming.py; e.g.
# make bench ARGS="--quick"), then the engine alone under 200 concurrent answers and its ceiling against raw SDK
# streams (bench/engine_load.py --ceiling), how the provider reads a stream (bench/provider_parse.py), then what
# a tool step costs (bench/tools.py), what an attachment adds (bench/attachments.py), compare mode's CPU
# (bench/compare.py) and three replicas behind HAProxy (bench/replicas.py).
bench: $(VENV)/.installed-embedded-test chromium postgresql redis haproxy
	$(PY) -m bench.streaming $(ARGS)
	$(PY) -m bench.engine_load --ceiling $(if $(findstring --quick,$(ARGS)),--quick,)
	$(PY) -m bench.provider_parse $(if $(findstring --quick,$(ARGS)),--quick,)
	$(PY) -m bench.tools $(if $(findstring --quick,$(ARGS)),--quick,)
	$(PY) -m bench.attachments $(if $(findstring --quick,$(ARGS)),--quick,)
	$(PY) -m bench.compare $(if $(findstring --quick,$(ARGS)),--quick,)
	$(PY) -m bench.replicas $(if $(findstring --quick,$(ARGS)),--quick,)

lint: $(VENV)/.installed-embedded-test
	$(VENV)/bin/ruff check chat tests bench docs app.py
	$(VENV)/bin/ruff format --check chat tests bench docs app.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-embedded: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.installed-embedded-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[embedded,test]'
	touch $@ $(VENV)/.installed-embedded

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download its own browser here).
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Debian's PostgreSQL server binaries (initdb, pg_ctl in /usr/lib/postgresql/<version>/bin) for the tests that run
# on PostgreSQL: they start their own throwaway server (tests/postgres.py); the package's own cluster is not used.
postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }

# Several replicas' tests (tests/test_replicas.py) run a real redis-server and HAProxy: Debian's packages.
redis:
	@command -v redis-server >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

haproxy:
	@command -v haproxy >/dev/null || ls /usr/sbin/haproxy >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq haproxy >/dev/null; }

clean:
	rm -rf $(VENV) .pytest_cache
