"""The asset graph's parts, listed once: every asset and asset check of ChainSync, by domain.

:mod:`pipelines.definitions` builds the code location from them; the sensors resolve the graph from them
when evaluated outside a code location (a test, a script), without importing the definitions.
"""

from typing import Any

import dagster as dg

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

ASSETS = [
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
]
CHECKS = [*ingest_checks.checks, *monitoring.checks]
FRESHNESS_SENSOR = monitoring.freshness_checks_sensor


def asset_graph() -> Any:
    """The graph of :data:`ASSETS` and :data:`CHECKS`, with the resources of the current settings (Dagster
    checks that every asset's resources are provided before it resolves a graph)."""
    from chainsync.settings import get_settings
    from pipelines.resources import build_resources

    return dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, resources=build_resources(get_settings())
    ).resolve_asset_graph()
