"""The Dagster definitions of ChainSync: ingest -> dbt -> forecasting / anomalies -> serving.

Load with ``dagster dev -m pipelines.definitions``; ``pipelines.run.run_pipeline`` materializes in-process.
"""

import dagster as dg

from chainsync.settings import Settings, get_settings
from pipelines.defs.access import assets as access
from pipelines.defs.anomalies import assets as anomalies
from pipelines.defs.anomalies import performance
from pipelines.defs.dbt import assets as dbt
from pipelines.defs.forecasting import assets as forecasting
from pipelines.defs.ingest import assets as ingest
from pipelines.defs.ingest import checks as ingest_checks
from pipelines.defs.ingest import request_log
from pipelines.defs.insights import assets as insights
from pipelines.defs.inventory import assets as inventory
from pipelines.defs.monitoring import checks as monitoring
from pipelines.defs.serving import assets as serving
from pipelines.jobs import forecast_job, marts_job
from pipelines.resources import build_resources
from pipelines.schedules import schedules
from pipelines.sensors import sensors


def build_definitions(settings: Settings) -> dg.Definitions:
    """The whole graph, with resources for ``settings``' data directory."""
    return dg.Definitions(
        assets=[
            *ingest.assets,
            *request_log.assets,
            *dbt.assets,
            *forecasting.assets,
            *inventory.assets,
            *anomalies.assets,
            *performance.assets,
            *access.assets,
            *insights.assets,
            *serving.assets,
        ],
        asset_checks=[*ingest_checks.checks, *monitoring.checks],
        sensors=[*sensors, monitoring.freshness_checks_sensor],
        jobs=[marts_job, forecast_job],
        schedules=schedules,
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(get_settings())
