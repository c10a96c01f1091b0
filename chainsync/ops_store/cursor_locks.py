"""Commit-order locks for the tables read by a ``seq`` cursor (PostgreSQL only).

A reader that asks for "everything after the last ``seq`` I saw" is exact only if ``seq`` order is commit
order. On SQLite it is: every write transaction starts with ``BEGIN IMMEDIATE`` and holds the database lock
until it commits. On PostgreSQL two transactions can take ``seq`` 5 and 6 and commit 6 first; a reader in
between sees 6, moves its cursor past 5, and never sees 5. So on PostgreSQL every transaction that assigns
such a ``seq`` first takes that table's transaction-scoped advisory lock, and assigns the values only
then. The lock is released after the commit is visible, so the next holder's values are higher than every
committed one, and a visible ``seq`` implies every lower one is visible too.

Lock order, to rule out deadlocks between transactions that need two of them: :data:`CHANGE_LOG` before
:data:`INBOX`; :data:`AUDIT` is never held together with another.
"""

from __future__ import annotations

from sqlalchemy import Connection

# Arbitrary, fixed 64-bit keys ("CSA" + a table number), the same in every process and in the triggers.
INBOX = 0x435341_0001
"""``event_inbox.seq``: the pipeline's landing watermark and the live feed."""
CHANGE_LOG = 0x435341_0002
"""``sync_changes.seq``: the devices' download cursors (taken by a trigger on the table, migration 0008)."""
AUDIT = 0x435341_0003
"""``security_audit``: the hash chain's "previous record" must be the previously committed one."""


def hold(conn: Connection, key: int) -> None:
    """Take the advisory lock ``key`` until ``conn``'s transaction ends (a no-op off PostgreSQL, where
    the database lock taken by ``BEGIN IMMEDIATE`` already orders commits)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": key})
