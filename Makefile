# ChainSync Analytics — two commands on a fresh machine: `make demo` and `make test`.
# Needs only Python 3.11 and make; uv is installed on first use if missing.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
export GX_ANALYTICS_ENABLED := false
export DAGSTER_DISABLE_TELEMETRY := true
export UV_LINK_MODE ?= copy

.PHONY: help uv install demo test test-fast lint format typecheck bench clean chromium docs

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

uv: ## Install uv if it is missing
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		{ echo "installing uv with pip"; $(PYTHON) -m pip install --quiet --disable-pip-version-check uv; }

install: uv ## Sync the locked environment (.venv)
	$(UV) sync --frozen

demo: install ## Generate the demo chain, materialize every asset, serve API :8000, Dagster :3000, Streamlit :8501
	CHAINSYNC_DEMO_MODE=true $(UV) run --frozen chainsync demo

test: install chromium ## Run the whole test suite (installs Debian's Chromium if missing)
	$(UV) run --frozen pytest -q

test-fast: install ## The suite without the slow end-to-end checks
	$(UV) run --frozen pytest -q -m "not slow"

chromium: ## Install Debian's Chromium for the dashboards' browser test (only when missing)
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium chromium-driver; }

lint: install ## ruff lint and format check, mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy chainsync api

docs: install ## Build the documentation site (MkDocs, strict: a broken link or nav entry fails)
	NO_MKDOCS_2_WARNING=1 $(UV) run --frozen mkdocs build --strict --quiet

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install ## Run the benchmarks (figures printed, compared as ratios)
	$(UV) run --frozen python bench/ingest.py
	$(UV) run --frozen python bench/pipeline.py

clean: ## Remove generated data (keeps data/README.md)
	find data -mindepth 1 -not -name README.md -not -path 'data/fixtures*' -delete
