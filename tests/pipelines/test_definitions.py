"""Tier 1: the definitions load, with every asset, check, resource and sensor the graph promises."""

import dagster as dg

from chainsync.settings import Settings
from pipelines.definitions import build_definitions, defs

RAW = [
    "raw_stores",
    "raw_products",
    "raw_sales_events",
    "raw_inventory_events",
    "raw_security_events",
    "raw_sync_events",
    "raw_data_access",
]
STAGING = [
    "stg_pos__sale_lines",
    "stg_pos__inventory_movements",
    "stg_pos__security_events",
    "stg_pos__sync_sessions",
    "stg_pos__stores",
    "stg_pos__products",
    "stg_ops__data_access",
]
INTERMEDIATE = ["int_sale_lines_localized", "int_stock_levels"]
MARTS = [
    "fct_sales_daily",
    "dim_store",
    "dim_product",
    "fct_stock_levels",
    "fct_security_events",
    "fct_sync_sessions",
    "fct_data_access_daily",
]
ANALYTICS = ["demand_forecast", "sales_anomalies", "access_anomalies", "serving_snapshot"]


def test_lazy_definitions_load(settings: Settings) -> None:
    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    loaded.resolve_all_job_defs()


def test_every_asset_exists_in_its_group(settings: Settings) -> None:
    graph = build_definitions(settings).resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(RAW + STAGING + INTERMEDIATE + MARTS + ANALYTICS) <= keys
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {groups[k] for k in RAW} == {"ingest"}
    assert {groups[k] for k in STAGING} == {"staging"}
    assert {groups[k] for k in INTERMEDIATE} == {"intermediate"}
    assert {groups[k] for k in MARTS} == {"marts"}


def test_dbt_sources_map_to_ingest_assets(settings: Settings) -> None:
    graph = build_definitions(settings).resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("stg_pos__sale_lines")).parent_keys}
    assert parents == {"raw_sales_events"}
    downstream = {k.to_user_string() for k in graph.get(dg.AssetKey("fct_sales_daily")).child_keys}
    assert {"demand_forecast", "sales_anomalies", "serving_snapshot"} <= downstream


def test_dbt_tests_and_gx_suite_are_asset_checks(settings: Settings) -> None:
    graph = build_definitions(settings).resolve_asset_graph()
    checks = {k.to_user_string() for k in graph.asset_check_keys}
    assert "fct_sales_daily:unique_fct_sales_daily_sales_daily_id" in checks
    assert "dim_store:unique_dim_store_store_id" in checks
    assert "stg_pos__sale_lines:accepted_values_stg_pos__sale_lines_sale_kind__sale__refund__void" in checks
    gx_key = dg.AssetCheckKey(dg.AssetKey("raw_sales_events"), "raw_sale_lines_expectations")
    assert gx_key in graph.asset_check_keys
    assert graph.get_check_spec(gx_key).blocking


def test_resources_and_sensor(settings: Settings) -> None:
    loaded = build_definitions(settings)
    assert {"ops_store", "warehouse", "dbt", "pipeline_config"} <= set(loaded.resources or {})
    assert loaded.resources["warehouse"].database == str(settings.warehouse)  # type: ignore[index]
    assert [s.name for s in loaded.sensors or []] == [
        "new_events_sensor",
        "run_failure_alert_sensor",
        "freshness_checks_sensor",
    ]


def test_one_job_and_trigger_per_cadence(settings: Settings) -> None:
    """Marts follow new events (sensor -> marts_job); forecasts refit daily (schedule -> forecast_job)."""
    loaded = build_definitions(settings)
    marts, forecasts = loaded.resolve_job_def("marts_job"), loaded.resolve_job_def("forecast_job")
    graph = loaded.resolve_asset_graph()
    marts_keys = {k.to_user_string() for k in marts.asset_layer.selected_asset_keys}
    forecast_keys = {k.to_user_string() for k in forecasts.asset_layer.selected_asset_keys}
    assert {"raw_sales_events", "fct_sales_daily", "sales_anomalies", "serving_snapshot"} <= marts_keys
    assert not {"demand_forecast", "forecast_accuracy", "reorder_suggestions"} & marts_keys
    refits = {"demand_forecast", "forecast_accuracy", "reorder_suggestions", "serving_snapshot"}
    assert refits <= forecast_keys
    assert not {"raw_sales_events", "fct_sales_daily"} & forecast_keys
    assert len(graph.get_all_asset_keys()) > len(marts_keys)
    sensor = next(s for s in loaded.sensors or [] if s.name == "new_events_sensor")
    assert sensor.job_name == "marts_job"
    (schedule,) = loaded.schedules or []
    assert schedule.name == "daily_forecast_schedule" and schedule.job_name == "forecast_job"


def test_pipeline_config_is_derived_from_the_settings() -> None:
    """PipelineConfig restates no setting: every knob is a setting of the same name, with its default, and
    from_settings copies each one (a changed setting reaches the assets)."""
    from pipelines.resources import PipelineConfig

    derived = set(PipelineConfig.model_fields) - {"serving_dir"}
    assert derived <= set(Settings.model_fields)
    for name in derived - {"dask_scheduler"}:
        assert PipelineConfig.model_fields[name].default == Settings.model_fields[name].default, name
    changed = Settings(
        anomaly_z_threshold=4.5,
        forecast_horizon_days=30,
        event_max_line_quantity=7,
        dask_scheduler="tcp://x:1",
    )
    config = PipelineConfig.from_settings(changed)
    for name in derived - {"dask_scheduler"}:
        assert getattr(config, name) == getattr(changed, name), name
    assert (config.anomaly_z_threshold, config.forecast_horizon_days) == (4.5, 30)
    assert config.line_rules.max_line_quantity == 7 and config.scheduler == "tcp://x:1"
    assert config.serving_dir == str(changed.serving)
