# ChainSync Analytics — two commands on a fresh machine: `make demo` and `make test`.
# Needs only Python 3.11 and make; uv is installed on first use if missing.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
export GX_ANALYTICS_ENABLED := false
export DAGSTER_DISABLE_TELEMETRY := true
export UV_LINK_MODE ?= copy
# Installed packages get their bytecode compiled once: where PYTHONDONTWRITEBYTECODE is set (as on our
# machines), every fresh process (servers the tests start, dbt, Dagster) would otherwise compile thousands
# of modules again (about 10 s each).
export UV_COMPILE_BYTECODE ?= 1

.PHONY: help uv install demo cluster test test-fast lint format typecheck bench clean chromium docs

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

uv: ## Install uv if it is missing
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		{ echo "installing uv with pip"; $(PYTHON) -m pip install --quiet --disable-pip-version-check uv; }

install: uv ## Sync the locked environment (.venv)
	$(UV) sync --frozen

demo: install ## Generate the demo chain, materialize every asset, serve API :8000, Dagster :3000, Streamlit :8501
	CHAINSYNC_DEMO_MODE=true $(UV) run --frozen chainsync demo

# A local two-process cluster: API processes on :8000 and :8001 sharing one PostgreSQL ops store and one
# Redis, so both serve the same data, tokens, rate limits and live feeds. The database is created when
# missing and migrated; the JWT secret is made once before either process starts (demo mode keeps it in
# the data directory; set CHAINSYNC_JWT_SECRET instead outside a demo). Ctrl-C stops both.
CLUSTER_PG ?= postgresql+psycopg://postgres@127.0.0.1:5432/chainsync
CLUSTER_REDIS ?= redis://127.0.0.1:6379/0
cluster: install ## Two API processes (:8000, :8001) on PostgreSQL + Redis (CLUSTER_PG, CLUSTER_REDIS)
	@export CHAINSYNC_OPS_STORE_URL='$(CLUSTER_PG)' CHAINSYNC_REDIS_URL='$(CLUSTER_REDIS)' \
		CHAINSYNC_DEMO_MODE=$${CHAINSYNC_DEMO_MODE:-true}; \
	$(UV) run --frozen python -c "import psycopg, sqlalchemy; from sqlalchemy.engine import make_url; \
	u = make_url('$(CLUSTER_PG)'); admin = u.set(drivername='postgresql', database='postgres'); \
	c = psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True); \
	c.execute('SELECT 1 FROM pg_database WHERE datname = %s', [u.database]).fetchone() or \
	c.execute('CREATE DATABASE \"%s\"' % u.database); \
	from chainsync.settings import get_settings; from chainsync.ops_store import get_engine; \
	s = get_settings(); s.jwt_key(); get_engine(s.ops_store)" && \
	{ $(UV) run --frozen chainsync api --port 8001 & second=$$!; \
	  trap 'kill $$second 2>/dev/null; wait $$second' EXIT INT TERM; \
	  $(UV) run --frozen chainsync api --port 8000; }

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
	$(UV) run --frozen mypy chainsync api tools pipelines

docs: install ## Build the documentation site (MkDocs, strict: a broken link or nav entry fails)
	NO_MKDOCS_2_WARNING=1 $(UV) run --frozen mkdocs build --strict --quiet

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install ## Run the benchmarks (figures printed, compared as ratios)
	$(UV) run --frozen python bench/ingest.py --postgres
	$(UV) run --frozen python bench/ingest.py --postgres --single
	$(UV) run --frozen python bench/sync.py
	$(UV) run --frozen python bench/pipeline.py

clean: ## Remove generated data (keeps data/README.md)
	find data -mindepth 1 -not -name README.md -not -path 'data/fixtures*' -delete
