"""The Dagster definitions of ChainSync: ingest -> dbt -> forecasting / anomalies -> serving.

Load with ``dagster dev -m pipelines.definitions``; ``pipelines.run.run_pipeline`` materializes in-process.
"""

import dagster as dg

from chainsync.settings import Settings, get_settings
from pipelines.graph import ASSETS, CHECKS, FRESHNESS_SENSOR
from pipelines.jobs import forecast_job, marts_job
from pipelines.resources import build_resources
from pipelines.schedules import schedules
from pipelines.sensors import sensors


def build_definitions(settings: Settings) -> dg.Definitions:
    """The whole graph, with resources for ``settings``' data directory."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        sensors=[*sensors, FRESHNESS_SENSOR],
        jobs=[marts_job, forecast_job],
        schedules=schedules,
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(get_settings())
