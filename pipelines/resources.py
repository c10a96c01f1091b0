"""Resources, built once from the settings: the ops store (read-only), the warehouse, dbt, pipeline knobs."""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource
from packaging import version
from sqlalchemy import Engine

from chainsync.risk import RiskModel
from chainsync.settings import Settings
from pipelines.defs.ingest.plausibility import LineRules

WAREHOUSE_ENV = "CHAINSYNC_WAREHOUSE_PATH"  # read by dbt_project/profiles.yml
# Read by dbt_project/profiles.yml too, so dbt's DuckDB connections obey the same limits as the pipeline's.
DUCKDB_ENV = {
    "memory_limit": "CHAINSYNC_DUCKDB_MEMORY_LIMIT",
    "threads": "CHAINSYNC_DUCKDB_THREADS",
    "temp_directory": "CHAINSYNC_DUCKDB_TEMP_DIRECTORY",
}


class DbtCli(DbtCliResource):
    """``DbtCliResource`` without two start-up costs a run pays before dbt even starts (each one a dbt
    import, seconds on a loaded machine): the dbt version is read from the installed package instead of a
    ``dbt --version`` subprocess, and no dbt adapter is built inside the Dagster process (dagster-dbt wants
    it only for ``fetch_row_counts`` / ``fetch_column_metadata``, which these assets do not use).

    ``dbt_vars`` (JSON) is passed to every build as ``--vars``: the models' parameters from the settings
    (the risk model of ``fct_ip_risk``, :meth:`chainsync.risk.RiskModel.dbt_vars`)."""

    dbt_vars: str = "{}"

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Any) -> Any:
        return None


class OpsStoreResource(dg.ConfigurableResource):
    """The API's ops store, opened read-only: the pipeline never writes to it."""

    url: str

    def engine(self) -> Engine:
        from chainsync.ops_store import make_engine

        return make_engine(self.url, read_only=True)


def _default(name: str) -> Any:
    """The default of setting ``name``: :class:`PipelineConfig` restates none of its own."""
    return Settings.model_fields[name].default


class PipelineConfig(dg.ConfigurableResource):
    """The knobs the analytics assets read: settings of :class:`chainsync.settings.Settings` by the same
    names, with its defaults, filled by :meth:`from_settings` (a Dagster resource holds plain config values,
    so the assets see them here and not the whole settings object)."""

    serving_dir: str
    serving_keep_versions: int = _default("serving_keep_versions")
    forecast_horizon_days: int = _default("forecast_horizon_days")
    forecast_holiday_country: str = _default("forecast_holiday_country")
    forecast_reconciliation: str = _default("forecast_reconciliation")
    forecast_processes: int = _default("forecast_processes")
    anomaly_threshold_quantile: float = _default("anomaly_threshold_quantile")
    anomaly_z_threshold: float = _default("anomaly_z_threshold")
    anomaly_driver_z: float = _default("anomaly_driver_z")
    anomaly_residual_threshold: float = _default("anomaly_residual_threshold")
    anomaly_residual_min_z: float = _default("anomaly_residual_min_z")
    anomaly_min_cashier_events: int = _default("anomaly_min_cashier_events")
    anomaly_min_security_failures: int = _default("anomaly_min_security_failures")
    anomaly_min_missing_units: int = _default("anomaly_min_missing_units")
    anomaly_min_missing_share: float = _default("anomaly_min_missing_share")
    anomaly_min_api_requests: int = _default("anomaly_min_api_requests")
    anomaly_min_api_errors: int = _default("anomaly_min_api_errors")
    ai_analytics_enabled: bool = _default("ai_analytics_enabled")
    dask_scheduler: str = ""  # "" runs forecasting in-process; else the Dask scheduler's address
    # Plausible sale lines (CHAINSYNC_EVENT_*): quarantined at landing, checked by the GX suite.
    event_max_line_quantity: int = _default("event_max_line_quantity")
    event_max_unit_price_cents: int = _default("event_max_unit_price_cents")
    event_clock_skew_seconds: int = _default("event_clock_skew_seconds")

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        """Every field from the setting of its name (the serving directory and the Dask address as the
        settings resolve them)."""
        special: dict[str, Any] = {
            "serving_dir": str(settings.serving),
            "dask_scheduler": settings.dask_scheduler or "",
        }
        copied = {name: getattr(settings, name) for name in cls.model_fields if name not in special}
        return cls(**special, **copied)

    @property
    def line_rules(self) -> LineRules:
        return LineRules(
            self.event_max_line_quantity, self.event_max_unit_price_cents, self.event_clock_skew_seconds
        )

    @property
    def scheduler(self) -> str | None:
        """The Dask scheduler's address for ``chainsync.parallel.map_partitions``, None for in-process."""
        return self.dask_scheduler.strip() or None

    @property
    def serving_dir_path(self) -> Path:
        return Path(self.serving_dir)


# Materialization metadata of an asset whose run found its table already up to date and left it as it was
# (the snapshot then carries the published copy over instead of rewriting it).
UNCHANGED = "unchanged"


@cache
def dbt_project_var(name: str) -> Any:
    """The value of ``name`` under ``vars`` in ``dbt_project.yml``: a constant the models and the Python
    side share, declared there once."""
    import yaml  # type: ignore[import-untyped]  # (no stubs installed; read as plain data)

    from chainsync.settings import get_settings

    project = yaml.safe_load((Path(get_settings().dbt_project_dir) / "dbt_project.yml").read_text())
    return project["vars"][name]


def frame_of(con: Any, sql: str) -> pl.DataFrame:
    """``sql``'s result on a DuckDB connection as a polars frame (through Arrow)."""
    return pl.from_arrow(con.sql(sql).to_arrow_table())  # type: ignore[return-value]


def tables_present(con: Any) -> set[str]:
    """Every table and view of the warehouse, as ``schema.name``."""
    rows = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
    return {f"{schema}.{name}" for schema, name in rows}


class Warehouse(DuckDBResource):
    """The DuckDB warehouse the pipeline owns; dbt runs against the same file."""

    def read_frame(self, sql: str) -> pl.DataFrame:
        """Run ``sql`` and return the result as a polars frame (through Arrow)."""
        with self.get_connection() as con:
            return frame_of(con, sql)

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        """Replace ``table`` (schema-qualified) with ``frame``; DuckDB scans the frame through Arrow."""
        schema = table.split(".")[0]
        with self.get_connection() as con:
            con.execute(f"create schema if not exists {schema}")
            con.register("frame", frame.to_arrow())
            con.execute(f"create or replace table {table} as select * from frame")
            con.unregister("frame")

    @property
    def dbt_target_path(self) -> Path:
        """Where dbt runs on this warehouse keep their artifacts (beside the warehouse file, one folder
        reused by every run, so partial parsing stays warm and the repository stays clean)."""
        return Path(self.database).resolve().parent / "dbt_target"

    @contextmanager
    def dbt_env(self) -> Iterator[None]:
        """Point ``profiles.yml`` at this warehouse, with this resource's memory limit, threads and spill
        directory, for the dbt subprocesses started inside the block."""
        values = {WAREHOUSE_ENV: self.database}
        for option, variable in DUCKDB_ENV.items():
            values[variable] = str(self.connection_config.get(option, ""))
        values[DUCKDB_ENV["threads"]] = str(self.connection_config.get("threads") or os.cpu_count() or 1)
        previous = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def duckdb_config(settings: Settings) -> dict[str, Any]:
    """DuckDB's connection options from the settings: the memory limit (e.g. ``4GB``), the thread count
    (0 keeps DuckDB's default, one per core) and a spill directory beside the warehouse, so a join or sort
    larger than the limit goes to disk instead of failing."""
    config: dict[str, Any] = {
        "memory_limit": settings.duckdb_memory_limit,
        "temp_directory": str(settings.warehouse.parent / "duckdb_tmp"),
    }
    if settings.duckdb_threads:
        config["threads"] = settings.duckdb_threads
    return config


def dbt_vars(settings: Settings) -> str:
    """The ``--vars`` of every dbt build (JSON): the models' parameters from the settings."""
    return json.dumps(RiskModel.from_settings(settings).dbt_vars())


def build_resources(settings: Settings) -> dict[str, Any]:
    """Every resource the asset graph needs, from one settings object."""
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    dbt_dir = Path(settings.dbt_project_dir)
    return {
        "ops_store": OpsStoreResource(url=settings.ops_store),
        "warehouse": Warehouse(database=str(settings.warehouse), connection_config=duckdb_config(settings)),
        "dbt": DbtCli(
            project_dir=str(dbt_dir),
            profiles_dir=str(dbt_dir),
            dbt_vars=dbt_vars(settings),
        ),
        "pipeline_config": PipelineConfig.from_settings(settings),
    }
