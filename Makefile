# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv and install the pinned requirements into it on first use.

SHELL := /bin/bash
ifndef PYTHON
PYTHON := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
# pytest-xdist workers for `make test`: most end-to-end tests wait on real processes and
# sockets, so two workers finish far sooner even on two cores. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

.PHONY: run test lint format requirements install clean chromium vendor

# Development mode unless the caller says otherwise; the settings module itself stays
# production-safe (DEBUG off) for every other way of starting the product.
run: export DEBUG ?= 1
run: $(VENV)/.installed-base
	$(BIN)/python manage.py serve

test: $(VENV)/.installed-dev $(VENV)/.installed-client chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	# The settings refuse to load without a secret unless DEBUG; mypy only reads them.
	DEBUG=1 $(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(VENV)/.installed-dev $(VENV)/.installed-client

# The browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
# Where it cannot be installed they are skipped, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		[ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "Chromium is not installed: the browser tests will be skipped."

# Re-vendor the TradingView chart library into static/vendor/ (see docs/web.md).
vendor:
	scripts/vendor_charts.sh

# Recompile the pins after editing requirements/*.in.
requirements: $(VENV)/.installed-dev
	cd requirements && for f in base dev prod; do \
		../$(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links \
		$$f.in -o $$f.txt; done

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "QuantSaaS needs Python 3.11 or newer on PATH." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: requirements/%.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r $<
	@touch $@

# The Python client (clients/python), editable, so tests/client and the `quantsaas` command
# use the working tree. No dependencies from here: dev.txt pins them.
$(VENV)/.installed-client: clients/python/pyproject.toml $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet --no-deps -e clients/python
	@touch $@

clean:
	rm -rf $(VENV) var/static .pytest_cache .ruff_cache
