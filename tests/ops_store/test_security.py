"""IP reputation in the ops store: the API processes' periodic re-read is served by indexes, and pruning
forgets only the addresses that no longer change any decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from typer.testing import CliRunner

from chainsync.ops_store import get_engine
from chainsync.ops_store.reputation import (
    Reputation,
    ReputationRetention,
    delete_unchanged_reputations,
    prunable_reputations,
    prune_reputations,
    save_reputation,
    sync_query,
)
from chainsync.ops_store.tables import ip_reputation
from chainsync.settings import Settings
from tools.cli import app


def _ips(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(ip_reputation.c.ip)).scalars())


def test_the_sync_reread_searches_two_indexes_instead_of_scanning(
    settings: Settings, ops_backend: str
) -> None:
    engine = get_engine(settings.ops_store)
    now = datetime.now(UTC)
    for i in range(200):
        save_reputation(engine, Reputation(f"198.51.100.{i}", 1.0, now))
    stmt = sync_query(now - timedelta(seconds=7), now).compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        if ops_backend == "postgresql":
            # 200 rows fit a page, where a scan is cheapest: ask whether the indexes can serve the OR at all.
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {stmt}")]
            assert not any("Seq Scan" in step for step in plan), plan
        else:
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {stmt}")]
            assert not any(step.startswith("SCAN") for step in plan), plan
    assert any("ix_ip_reputation_blocked_until" in step for step in plan), plan
    assert any("ix_ip_reputation_updated_at" in step for step in plan), plan


def test_prune_forgets_only_what_changes_no_decision(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    keep = ReputationRetention.from_settings(settings)  # half-life 30 min, negligible 0.1, 30 days
    t0 = datetime.now(UTC)
    save_reputation(engine, Reputation("198.51.100.1", 1.0, t0))  # a probe, never blocked
    save_reputation(engine, Reputation("198.51.100.2", 9.0, t0))  # nearly blocked
    save_reputation(  # blocked for a week
        engine, Reputation("198.51.100.3", 12.0, t0, ban_count=3, blocked_until=t0 + timedelta(days=7))
    )
    save_reputation(  # blocked for an hour
        engine, Reputation("198.51.100.4", 12.0, t0, ban_count=1, blocked_until=t0 + timedelta(hours=1))
    )
    # 3 h on: the probe's 1.0 is 0.016, gone; 9.0 is 0.14, still above 1 % of the block score.
    assert prune_reputations(engine, t0 + timedelta(hours=3), keep) == 1
    assert _ips(engine) == {"198.51.100.2", "198.51.100.3", "198.51.100.4"}
    # 6 days on: every score is negligible; the block in force stays, and so does the ended block's ban
    # count (a return within the retention must escalate).
    assert prune_reputations(engine, t0 + timedelta(days=6), keep) == 1
    assert _ips(engine) == {"198.51.100.3", "198.51.100.4"}
    # 31 days on: the hour's block ended 30 days and 23 h ago; the week's ended 24 days ago.
    assert prune_reputations(engine, t0 + timedelta(days=31), keep) == 1
    assert _ips(engine) == {"198.51.100.3"}
    assert prune_reputations(engine, t0 + timedelta(days=38), keep) == 1
    assert _ips(engine) == set()


def test_prune_keeps_a_row_written_again_since_it_was_judged(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    keep = ReputationRetention.from_settings(settings)
    t0 = datetime.now(UTC)
    save_reputation(engine, Reputation("198.51.100.1", 1.0, t0))
    save_reputation(engine, Reputation("198.51.100.2", 1.0, t0))
    judged = prunable_reputations(engine, t0 + timedelta(hours=3), keep, page=1)  # read page by page
    assert sorted(ip for ip, _ in judged) == ["198.51.100.1", "198.51.100.2"]
    # Meanwhile another API process scores .1 again.
    save_reputation(engine, Reputation("198.51.100.1", 8.0, t0 + timedelta(hours=3)))
    assert delete_unchanged_reputations(engine, judged) == 1
    assert _ips(engine) == {"198.51.100.1"}


def test_cli_security_prune(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    now = datetime.now(UTC)
    save_reputation(engine, Reputation("198.51.100.1", 1.0, now - timedelta(days=1)))
    save_reputation(
        engine, Reputation("198.51.100.2", 0.0, now - timedelta(days=1), 2, now + timedelta(hours=1))
    )
    result = CliRunner().invoke(app, ["security", "prune"])
    assert result.exit_code == 0, result.output
    assert "pruned 1 ip_reputation rows" in result.output
    assert _ips(engine) == {"198.51.100.2"}
