"""The marts planner: what a run with nothing new in the ops store still has to rebuild."""

from pathlib import Path

import duckdb

from chainsync.settings import Settings
from pipelines.definitions import build_definitions
from pipelines.defs.dbt.assets import DBT_STAGE, _project_fingerprint, project_changed, vars_digest
from pipelines.defs.ingest.warehouse import change_fingerprint, ensure_schema, record_build
from pipelines.resources import dbt_vars
from pipelines.run import _planned_marts


def _built(warehouse: Path, settings: Settings) -> None:
    """A warehouse whose last dbt build recorded ``settings``' vars and this project's files."""
    with duckdb.connect(str(warehouse)) as con:
        ensure_schema(con)
        fingerprint = f"{change_fingerprint(con)}:{vars_digest(dbt_vars(settings))}:{_project_fingerprint()}"
        record_build(con, DBT_STAGE, fingerprint)


def test_a_changed_risk_setting_plans_the_marts_without_new_events(settings: Settings) -> None:
    _built(settings.warehouse, settings)
    slower = settings.model_copy(update={"risk_half_life_minutes": settings.risk_half_life_minutes * 2})
    with duckdb.connect(str(settings.warehouse)) as con:
        assert not project_changed(con)
        assert not project_changed(con, dbt_vars(settings))
        assert project_changed(con, dbt_vars(slower))
    graph = build_definitions(settings)
    # An empty ops store beside a warehouse that never landed its catalog: the catalog's models are
    # pending either way. The risk model's half-life changed: the whole marts cadence, fct_ip_risk with
    # it, so the new setting reaches the marts before the next security event does.
    same = {key.to_user_string() for key in _planned_marts(settings, graph)}
    planned = {key.to_user_string() for key in _planned_marts(slower, graph)}
    assert "fct_ip_risk" not in same and "fct_ip_risk" in planned
    assert same < planned and "serving_snapshot" in planned
    assert "demand_forecast" not in planned
