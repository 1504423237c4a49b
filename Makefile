# mlops-hooks: `make demo` and `make test` are all a newcomer needs; both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSSTAMP := $(VENV)/.sysdeps
# The dev/CI install comes from this lock (`make lock` regenerates it); pyproject.toml keeps ranges.
LOCK := requirements.lock
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
# CPU wheel, installed by pip before the lock (pip finds it on this machine's disk); a bare `torch`
# requirement would pull a multi-gigabyte CUDA build. The lock leaves torch out for that reason.
TORCH := torch==2.13.0
TORCH_FIND_LINKS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
# Two workers: most end-to-end tests wait on servers and subprocesses, so the suite takes about
# half the time on two cores (run a single file with PYTEST_ARGS="-n 0 tests/...").
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
BENCH_ARGS ?=
# Chromium for the browser tests, Redis for the scale-out tests, a colour emoji font for the page.
DEBS := chromium chromium-driver redis-server fonts-noto-color-emoji
# `make test` runs the whole suite: a missing Chromium or redis-server fails, it is never skipped.
export MLOPS_HOOKS_REQUIRE_SYSDEPS ?= 1

.PHONY: install sysdeps test test-latest lint typecheck lock demo bench clean

install: $(STAMP)

# venv + pinned uv + torch's CPU wheel, shared by the locked and the latest install.
define bootstrap
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) $(TORCH)
endef

$(STAMP): pyproject.toml $(LOCK)
	$(call bootstrap,$(VENV))
	$(UV) pip install -q --python $(PY) --no-deps -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	$(UV) pip check --python $(PY)
	@touch $(STAMP)

# Regenerate the lock: the newest versions pyproject.toml allows, for every extra `install` uses,
# plus the build backend (the editable install builds without isolation, from the lock).
# torch resolves to the CPU wheel on disk (its dependencies, not CUDA's, enter the lock).
TORCH_CPU = --find-links $(TORCH_FIND_LINKS) --override <(echo '$(TORCH)+cpu')
lock: | $(VENV)/bin/uv
	printf 'setuptools>=77\nwheel\n' | $(UV) pip compile pyproject.toml - --extra dev $(TORCH_CPU) \
		--no-emit-package torch --generate-hashes --python $(PY) \
		--custom-compile-command 'make lock' --upgrade -q -o $(LOCK)

$(VENV)/bin/uv:
	$(call bootstrap,$(VENV))

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

# mypy sees the installed layout (plugins/ and server/ inside mlops_hooks): tools/typecheck.py
# names every source file by its installed module, from pyproject.toml's package-dir table.
typecheck: install
	$(PY) tools/typecheck.py

test: install sysdeps lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The newest releases pyproject.toml allows, in a venv of their own, without the lock: a breaking
# upstream release shows up here (a known failure to fix) before it reaches the lock.
LATEST := .venv-latest
test-latest: sysdeps
	$(call bootstrap,$(LATEST))
	$(LATEST)/bin/uv pip install -q --python $(LATEST)/bin/python --upgrade $(TORCH_CPU) -e '.[dev]'
	$(LATEST)/bin/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/mlops-hooks demo

bench: install
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
