# Lealta — every target sets up what it needs: only Python 3.11+ and make are assumed.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test test-sqlite test-postgres bench lint format setup clean docs-shots

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode is compiled here, once: this machine's PYTHONDONTWRITEBYTECODE=1 would otherwise
# make every command compile FastAPI, SQLAlchemy & co. from source (~10 s per start).
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

setup: $(VENV)/.synced
	@$(VENV)/bin/python -m compileall -q src >/dev/null

run: setup  ## Start Lealta on the embedded SQLite default, with the demo programme and data
	$(VENV)/bin/lealta demo up
	$(VENV)/bin/lealta run

test: setup  ## The whole suite, on SQLite and on PostgreSQL side by side (browser tests included)
	bash scripts/ensure-chromium.sh
	bash scripts/test.sh

docs-shots: setup  ## Retake the README's screenshots (docs/*.png) with the browser tests that take them
	bash scripts/ensure-chromium.sh
	LEALTA_UPDATE_DOCS=1 LEALTA_TEST_DATABASE_URL= $(VENV)/bin/python -m pytest -p no:cacheprovider \
		tests/browser/test_dashboard_page.py tests/browser/test_gamification_pages.py \
		tests/browser/test_referrals_pages.py

bench: setup  ## Hot-path benchmarks with same-run baselines
	$(VENV)/bin/python -m bench

lint: setup
	$(VENV)/bin/ruff check src tests bench clients/python
	$(VENV)/bin/ruff format --check src tests bench clients/python
	$(VENV)/bin/mypy
	cd clients/python && MYPYPATH=src ../../$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff check --fix src tests bench clients/python
	$(VENV)/bin/ruff format src tests bench clients/python

clean:
	rm -rf $(VENV) $(TOOLS) data .pytest_cache .mypy_cache .ruff_cache
