"""Pipeline monitoring: the run-failure sensor alerts a webhook (a real HTTP server on loopback) and
records the failure for the API's health; freshness checks guard the marts and the snapshot."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest

from chainsync.alerts import alert_payload, send_alert
from chainsync.run_status import read_run_status
from chainsync.settings import Settings, get_settings
from pipelines.definitions import build_definitions
from pipelines.defs.monitoring.checks import FRESHNESS_BOUND, MART_KEYS
from pipelines.resources import PipelineConfig, build_resources
from pipelines.sensors import run_failure_alert_sensor


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers ``statuses`` in turn (then 200) and keeps the bodies."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(statuses=[503])  # the first delivery fails: the alert must be retried
    yield r
    r.close()


@dg.op
def explode() -> None:
    raise RuntimeError("warehouse is on fire")


@dg.job
def doomed_job() -> None:
    explode()


def test_run_failure_sensor_posts_to_the_webhook_and_records_the_failure(
    settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITORING_ALERT_WEBHOOK", receiver.url)
    get_settings.cache_clear()
    with dg.DagsterInstance.ephemeral() as instance:
        result = doomed_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"pipeline_config": PipelineConfig(serving_dir=str(settings.serving))},
        ).for_run_failure()
        run_failure_alert_sensor(context)

    assert len(receiver.bodies) == 1  # delivered once, on the retry after the 503
    alert = receiver.bodies[0]
    assert alert["kind"] == "pipeline_run_failure" and alert["severity"] == "critical"
    assert alert["details"]["run_id"] == result.run_id and alert["details"]["job"] == "doomed_job"
    assert alert["details"]["failed_steps"][0]["step"] == "explode"
    assert "warehouse is on fire" in alert["details"]["failed_steps"][0]["error"]
    status = read_run_status(settings.serving)
    assert status["last_failure"]["run_id"] == result.run_id and status["failures_total"] == 1


def test_send_alert_gives_up_after_bounded_retries() -> None:
    r = Receiver(statuses=[500, 500, 500])
    try:
        ok = send_alert(r.url, alert_payload("test", "x"), attempts=3, initial_wait_s=0.01, max_wait_s=0.05)
        assert ok is False and r.bodies == [] and r.statuses == []  # three tries, all answered 500
        assert send_alert(None, alert_payload("test", "x")) is False  # no webhook configured: nothing sent
    finally:
        r.close()


def test_freshness_checks_guard_the_marts_and_the_snapshot(settings: Settings) -> None:
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    guarded = {key.asset_key.to_user_string() for key in graph.asset_check_keys if "fresh" in key.name}
    assert guarded == {*MART_KEYS, "serving_snapshot"}
    assert timedelta(hours=26) >= FRESHNESS_BOUND
    assert "freshness_checks_sensor" in {s.name for s in defs.sensors or []}


def test_a_snapshot_never_materialized_fails_its_freshness_check(settings: Settings) -> None:
    from pipelines.defs.monitoring.checks import snapshot_freshness_checks
    from pipelines.defs.serving.assets import serving_snapshot

    keys = [k for checks in snapshot_freshness_checks for k in checks.check_keys]
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [serving_snapshot, *snapshot_freshness_checks],
            selection=dg.AssetSelection.checks(*keys),
            instance=instance,
            resources=build_resources(settings),
            raise_on_error=False,
        )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1 and evaluations[0].passed is False
