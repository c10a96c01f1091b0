"""dbt wired in three steps: one DbtProject, one @dbt_assets streaming `dbt build`, a thin translator.

The models' parameters that come from the settings (the risk model of ``fct_ip_risk``) reach dbt as
``--vars`` from the dbt resource; ``dbt_project.yml`` holds the same values as defaults."""

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtProject,
    dbt_assets,
)

from chainsync.settings import get_settings
from pipelines.defs.ingest.warehouse import build_fingerprint, change_fingerprint, ensure_schema, record_build
from pipelines.jobs import PLANNED_TAG
from pipelines.resources import DbtCli, Warehouse

DBT_STAGE = "dbt_build"

dbt_project = DbtProject(
    project_dir=get_settings().dbt_project_dir, profiles_dir=get_settings().dbt_project_dir
)


def _project_files() -> list[Path]:
    root = dbt_project.project_dir
    files = [*root.glob("models/**/*"), *root.glob("macros/**/*"), root / "dbt_project.yml"]
    return sorted(p for p in files if p.is_file())


def _project_fingerprint() -> str:
    """A hash of the dbt project's sources, so editing a model rebuilds even without new events."""
    digest = hashlib.sha256()
    for path in _project_files():
        digest.update(path.relative_to(dbt_project.project_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _manifest_is_stale() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(path.stat().st_mtime > built for path in _project_files())


# `dagster dev` re-parses on load; elsewhere (tests, the CLI, a fresh clone) parse when the manifest is
# missing or older than a model, macro or the project file.
dbt_project.prepare_if_dev()
if _manifest_is_stale():
    dbt_project.preparer.prepare(dbt_project)


def vars_digest(dbt_vars: str) -> str:
    """The part of the build fingerprint that stands for the ``--vars`` a build was given."""
    return hashlib.sha256(dbt_vars.encode()).hexdigest()[:8]


def project_changed(con: duckdb.DuckDBPyConnection, dbt_vars: str | None = None) -> bool:
    """Whether the dbt project's files, or (given) the vars its models read (the risk model of
    ``fct_ip_risk``), changed since the last recorded build (or none was recorded): the planner then
    selects the whole marts cadence, so a changed setting reaches the marts without new events."""
    try:
        previous = build_fingerprint(con, DBT_STAGE)
    except duckdb.CatalogException:  # a warehouse never built
        return True
    if previous is None or not previous.endswith(f":{_project_fingerprint()}"):
        return True
    return dbt_vars is not None and previous.rsplit(":", 2)[-2] != vars_digest(dbt_vars)


class ChainSyncDbtTranslator(DagsterDbtTranslator):
    """Models are keyed by their dbt name (``fct_sales_daily``) and grouped by their top folder (staging,
    marts). Sources map to the ingest assets through ``meta.dagster.asset_key`` in ``_pos__sources.yml``."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] in ("model", "snapshot", "seed"):
            return spec.replace_attributes(key=dg.AssetKey(props["name"]), group_name=str(props["fqn"][1]))
        return spec


translator = ChainSyncDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator)
def chainsync_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCli, warehouse: Warehouse
) -> Iterator[Any]:
    """One `dbt build` (models, data tests; unit tests when the project is new or changed) on the
    warehouse, of the selected models only: a planned marts run selects those downstream of new data
    (dagster-dbt passes the selection to dbt). Partial parsing stays warm in the persisted target
    directory. A whole-graph build is skipped when
    nothing was landed and no model or var changed since the last successful one, which also skips
    everything downstream."""
    with warehouse.get_connection() as con:
        ensure_schema(con)
        project = _project_fingerprint()
        # The vars too (a changed risk setting rescores fct_ip_risk), between the two so that
        # ``project_changed`` still reads the project's part at the end.
        fingerprint = f"{change_fingerprint(con)}:{vars_digest(dbt.dbt_vars)}:{project}"
        previous = build_fingerprint(con, DBT_STAGE)
    if previous == fingerprint and not context.is_subset:
        context.log.info("No new events, catalog, model or vars changes since the last dbt build; skipping.")
        return
    # No manifest.json / run_results.json in the data directory's target: nothing reads them (dagster-dbt
    # streams dbt's log), and the partial-parse state is written all the same.
    args = ["build", "--no-write-json", "--vars", dbt.dbt_vars]
    if previous is not None and not previous.endswith(f":{project}"):
        # The models changed: rebuild incremental models from scratch so old rows follow the new logic.
        context.log.info("dbt project changed since the last build; running with --full-refresh.")
        args.append("--full-refresh")
    elif previous is not None:
        # The unit tests run on their own fixtures, not on the warehouse: their verdict depends on the
        # project's files alone, and a build of these very files already passed them (the fingerprint is
        # recorded only after a successful build). The data tests run as always.
        args += ["--exclude-resource-type", "unit_test"]
    with warehouse.dbt_env():
        yield from dbt.cli(args, context=context, target_path=warehouse.dbt_target_path).stream()
    # A partial build vouches for the models it left out only when the planner chose it: every model
    # downstream of new data was in it (pipelines/jobs.py).
    if not context.is_subset or context.run.tags.get(PLANNED_TAG) == "true":
        with warehouse.get_connection() as con:
            record_build(con, DBT_STAGE, fingerprint)


assets = [chainsync_dbt_models]
