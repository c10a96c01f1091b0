"""A hypothesis state machine drives upload, download, server-side catalog changes and conflict
resolution against the real API (TestClient over a real SQLite ops store) and compares every answer with
a small in-memory reference model of the sync rules."""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.main import create_app
from api.security.tokens import create_access_token
from chainsync.ops_store import get_engine
from chainsync.ops_store.catalog import upsert_products
from chainsync.ops_store.tables import event_inbox
from chainsync.ops_store.users import create_device_key
from chainsync.settings import Settings

PIDS = ("P1", "P2", "P3", "P4")
LABELS = st.sampled_from(["A-1", "A-2", "B-1", "C-9"])


def _product(pid: str, price: int, active: bool = True) -> dict[str, Any]:
    return {
        "product_id": pid,
        "name": f"Product {pid}",
        "category": "c",
        "unit_cost_cents": 1,
        "price_cents": price,
        "lead_time_days": 7,
        "is_active": active,
    }


class SyncMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="sync-sm-"))
        cfg = Settings(  # type: ignore[call-arg]
            _env_file=None, data_dir=self.tmp, jwt_secret="state-machine-" + "x" * 40, log_level="WARNING"
        )
        self.engine = get_engine(cfg.ops_store)
        upsert_products(self.engine, [_product(p, 100) for p in PIDS])
        self.key = {"X-API-Key": create_device_key(self.engine, "S001", "POS-01")}
        self.client = TestClient(create_app(cfg))
        self.client.__enter__()
        token = create_access_token(cfg, subject="mona", role="manager", stores=["S001"]).token
        self.manager = {"Authorization": f"Bearer {token}"}
        # The reference model.
        self.catalog: dict[str, int | None] = dict.fromkeys(PIDS, 100)  # None: deleted
        self.overrides: dict[str, tuple[int, dict[str, Any]]] = {}
        self.sales: set[str] = set()
        self.sent: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (item, first answer)
        self.conflicts: dict[int, dict[str, Any]] = {}  # open: {"pid", "client", "after_last_write"}
        self.last_batch: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        # The terminal's replica, kept by incremental downloads.
        self.cursor: str | None = None
        self.replica_products: dict[str, int] = {}
        self.replica_overrides: dict[str, tuple[int, dict[str, Any]]] = {}

    def teardown(self) -> None:
        if hasattr(self, "client"):
            self.client.__exit__(None, None, None)
            self.engine.dispose()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------------
    def _upload(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {
            "batch_id": f"B-{uuid.uuid4().hex[:12]}",
            "sent_at": datetime.now(UTC).isoformat(),
            "items": items,
        }
        resp = self.client.post("/api/sync/upload", json=body, headers=self.key)
        assert resp.status_code == 200, resp.text
        return resp.json()["results"]

    def _sale(self) -> dict[str, Any]:
        eid = str(uuid.uuid4())
        payload = {
            "event_id": eid,
            "occurred_at": datetime.now(UTC).isoformat(),
            "store_id": "S001",
            "device_id": "POS-01",
            "transaction_id": f"T-{eid[:8]}",
            "kind": "sale",
            "cashier_id": "C1",
            "payment_type": "cash",
            "lines": [{"product_id": "P1", "quantity": 1, "unit_price_cents": 100}],
        }
        return {"mutation_id": f"m-{eid}", "type": "sale", "payload": payload}

    def _write(self, pid: str, values: dict[str, Any]) -> None:
        version, current = self.overrides.get(pid, (0, {"shelf_label": None, "reorder_point": None}))
        merged = {**current, **values}
        self.overrides[pid] = (version + 1, merged)
        for c in self.conflicts.values():
            if c["pid"] == pid:
                c["after_last_write"] = False

    # --- rules ---------------------------------------------------------------------------------
    @rule(new=st.integers(0, 3), replays=st.integers(0, 2), bad=st.booleans())
    def upload_sales(self, new: int, replays: int, bad: bool) -> None:
        items = [self._sale() for _ in range(new)]
        old = (
            [(item, first) for item, first in self.sent if item["type"] == "sale"][-replays:]
            if replays
            else []
        )
        first_answers = {item["mutation_id"]: first for item, first in old}
        items += [item for item, _ in old]
        if bad:
            broken = self._sale()
            broken["payload"]["lines"][0]["quantity"] = 0
            items.append(broken)
        if not items:
            return
        answers = self._upload(items)
        for item, answer in zip(items, answers, strict=True):
            eid = item["payload"]["event_id"]
            if item["mutation_id"] in first_answers:
                first = first_answers[item["mutation_id"]]
                assert answer["status"] == ("duplicate" if first["status"] == "applied" else first["status"])
            elif item["payload"]["lines"][0]["quantity"] == 0:
                assert answer["status"] == "rejected" and answer["errors"][0]["field"].endswith("quantity")
            else:
                assert answer["status"] == "applied", answer
                self.sales.add(eid)
            if item["mutation_id"] not in first_answers:
                self.sent.append((item, answer))
        self.last_batch = (items, answers)

    @precondition(lambda self: self.last_batch is not None)
    @rule()
    def replay_last_batch(self) -> None:
        items, first = self.last_batch  # type: ignore[misc]
        answers = self._upload(items)
        for before, after in zip(first, answers, strict=True):
            expected = "duplicate" if before["status"] in ("applied", "duplicate") else before["status"]
            assert after["status"] == expected, (before, after)
            if expected == "conflict":
                assert after["conflict_id"] == before["conflict_id"]

    @rule(pid=st.sampled_from(PIDS), stale=st.booleans(), label=LABELS, point=st.none() | st.integers(0, 5))
    def edit_override(self, pid: str, stale: bool, label: str, point: int | None) -> None:
        version, current = self.overrides.get(pid, (0, {"shelf_label": None, "reorder_point": None}))
        base = version - 1 if stale and version > 0 else version
        values: dict[str, Any] = {"shelf_label": label} | (
            {"reorder_point": point} if point is not None else {}
        )
        item = {
            "mutation_id": f"m-{uuid.uuid4().hex}",
            "type": "product_override",
            "base_version": base,
            "edited_at": datetime.now(UTC).isoformat(),
            "payload": {"product_id": pid, **values},
        }
        (answer,) = self._upload([item])
        if self.catalog[pid] is None:
            assert answer["status"] == "rejected", answer
        elif base == version:
            assert answer["status"] == "applied" and answer["version"] == version + 1, answer
            self._write(pid, values)
        elif all(current.get(k) == v for k, v in values.items()):
            assert answer["status"] == "applied" and answer["version"] == version, answer
        else:
            assert answer["status"] == "conflict", answer
            assert answer["server_value"] == current
            self.conflicts[answer["conflict_id"]] = {"pid": pid, "client": values, "after_last_write": True}
        self.last_batch = ([item], [answer])

    @precondition(lambda self: bool(self.conflicts))
    @rule(
        data=st.data(), strategy=st.sampled_from(["server_wins", "client_wins", "last_writer_wins", "value"])
    )
    def resolve(self, data: st.DataObject, strategy: str) -> None:
        cid = data.draw(st.sampled_from(sorted(self.conflicts)))
        c = self.conflicts.pop(cid)
        body: dict[str, Any] = {"conflict_id": cid, "strategy": strategy}
        if strategy == "value":
            body["value"] = {"reorder_point": 42}
        resp = self.client.post(
            "/api/sync/resolve-conflicts", json={"resolutions": [body]}, headers=self.manager
        )
        assert resp.status_code == 200, resp.text
        (result,) = resp.json()["results"]
        assert result["status"] == "resolved"
        _, current = self.overrides.get(c["pid"], (0, {"shelf_label": None, "reorder_point": None}))
        winner: dict[str, Any] | None = None
        if strategy == "client_wins" or (strategy == "last_writer_wins" and c["after_last_write"]):
            winner = c["client"]
        elif strategy == "value":
            winner = {"reorder_point": 42}
        if winner is not None and {**current, **winner} != current:
            self._write(c["pid"], winner)
        assert result["resolved_value"] == self.overrides.get(c["pid"], (0, current))[1]

    @rule(pid=st.sampled_from(PIDS), price=st.none() | st.integers(1, 500))
    def server_changes_catalog(self, pid: str, price: int | None) -> None:
        """An admin changes a price or deletes a product (server-wins); ``None`` deletes."""
        if price is None:
            upsert_products(self.engine, [_product(pid, self.catalog[pid] or 100, active=False)])
        else:
            upsert_products(self.engine, [_product(pid, price)])
        self.catalog[pid] = price

    @rule(limit=st.integers(1, 4))
    def download(self, limit: int) -> None:
        while True:
            params: dict[str, Any] = {"limit": limit}
            if self.cursor:
                params["cursor"] = self.cursor
            resp = self.client.get("/api/sync/download", params=params, headers=self.key)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert len(body["records"]) <= limit + 1  # (+1: a snapshot reset marker)
            for rec in body["records"]:
                if rec["entity"] == "product" and rec["op"] == "upsert":
                    self.replica_products[rec["key"]] = rec["data"]["price_cents"]
                elif rec["entity"] == "product":
                    self.replica_products.pop(rec["key"], None)
                elif rec["entity"] == "product_override":
                    self.replica_overrides[rec["key"]] = (
                        rec["version"],
                        {k: rec["data"][k] for k in ("shelf_label", "reorder_point")},
                    )
            self.cursor = body["next_cursor"]
            if not body["has_more"]:
                break
        assert self.replica_products == {p: v for p, v in self.catalog.items() if v is not None}
        assert self.replica_overrides == self.overrides

    @invariant()
    def sales_stored_exactly_once(self) -> None:
        if not hasattr(self, "engine"):
            return
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count()).select_from(event_inbox).where(event_inbox.c.event_type == "sale")
            ).scalar_one()
        assert n == len(self.sales)

    @invariant()
    def open_conflicts_match(self) -> None:
        if not hasattr(self, "client"):
            return
        resp = self.client.get("/api/sync/conflicts", headers=self.manager)
        assert {c["conflict_id"] for c in resp.json()["conflicts"]} == set(self.conflicts)


SyncMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=16,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSyncStateMachine = SyncMachine.TestCase
