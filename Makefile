# mlops-hooks: `make demo` and `make test` are all a newcomer needs; both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSSTAMP := $(VENV)/.sysdeps
# CPU wheel; a bare `torch` requirement would pull a multi-gigabyte CUDA build.
TORCH := torch==2.13.0
# Two workers: most end-to-end tests wait on servers and subprocesses, so the suite takes about
# half the time on two cores (run a single file with PYTEST_ARGS="-n 0 tests/...").
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
BENCH_ARGS ?=
# Chromium for the browser tests, Redis for the scale-out tests, a colour emoji font for the page.
DEBS := chromium chromium-driver redis-server fonts-noto-color-emoji

.PHONY: install sysdeps test lint typecheck demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

sysdeps: $(SYSSTAMP)

$(SYSSTAMP): | $(STAMP)
	@missing=""; for pkg in $(DEBS); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			$$missing >/dev/null; \
	fi
	@touch $(SYSSTAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory typecheck

# mypy sees the installed layout (plugins/ and server/ inside mlops_hooks) through a
# throwaway tree of symlinks.
typecheck: install
	@rm -rf build/typecheck && mkdir -p build/typecheck
	@cp -rs $(CURDIR)/mlops_hooks build/typecheck/
	@ln -s $(CURDIR)/plugins build/typecheck/mlops_hooks/plugins
	@ln -s $(CURDIR)/server build/typecheck/mlops_hooks/server
	cd build/typecheck && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml \
		mlops_hooks

test: install sysdeps lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/mlops-hooks demo

bench: install
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
