"""Fixtures for the pipeline tests: a real ops store (SQLite) seeded with a small chain, and a warehouse."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from chainsync.ops_store import get_engine
from chainsync.settings import Settings
from tests.pipelines.chain import ChainTotals, seed_catalog

START = date(2026, 1, 1)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(data_dir=data_dir, serving_keep_versions=10, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def ops_engine(settings: Settings) -> Engine:
    return get_engine(settings.ops_store)


@pytest.fixture
def catalog(ops_engine: Engine) -> tuple[list[str], dict[str, int]]:
    return seed_catalog(ops_engine, stores=2, products=5)


@pytest.fixture
def totals() -> ChainTotals:
    return ChainTotals()
