"""Redis for the tests: the real server at 127.0.0.1:6379 (``CHAINSYNC_TEST_REDIS_URL``, see
``tests/services.py``), shared with other test sessions running at the same time.

A session claims a database number of its own (a ``SET NX`` claim in database 0, released at the end) and
uses a key prefix of its own in it; at the end it deletes the keys under its prefix and nothing else. Pub/sub
channels span databases, so the prefix (which names the channels too) is what keeps sessions apart there.
Registered as a plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from tests import services

# The server without a database number: each session picks its own (below).
SERVER = (
    services.redis_url().rsplit("/", 1)[0] if services.redis_url().count("/") > 2 else services.redis_url()
)
CLAIM_SECONDS = 3 * 3600  # a crashed session's claim lapses


@dataclass(frozen=True)
class RedisTarget:
    url: str  # redis://host:port/<db>
    prefix: str  # this session's key prefix (CHAINSYNC_REDIS_KEY_PREFIX)
    db: int

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def own_keys(self) -> list[str]:
        with self.client() as r:
            return sorted(str(k) for k in r.scan_iter(match=f"{self.prefix}*", count=1000))

    def delete_own_keys(self) -> int:
        with self.client() as r:
            keys = list(r.scan_iter(match=f"{self.prefix}*", count=1000))
            return int(r.delete(*keys)) if keys else 0


def _claim_db(session: str) -> int:
    with redis.Redis.from_url(f"{SERVER}/0") as r:
        for db in range(1, int(r.config_get("databases").get("databases", 16))):
            if r.set(f"chainsync-tests:db-claim:{db}", session, nx=True, ex=CLAIM_SECONDS):
                return db
    return 15  # every number claimed: share one (the prefix still keeps the sessions apart)


def _release_db(db: int, session: str) -> None:
    with redis.Redis.from_url(f"{SERVER}/0") as r:
        key = f"chainsync-tests:db-claim:{db}"
        if r.get(key) == session.encode():
            r.delete(key)


@pytest.fixture(scope="session")
def redis_target() -> Iterator[RedisTarget]:
    """This session's Redis database and key prefix; its keys are deleted at the end."""
    session = uuid.uuid4().hex[:10]
    try:
        db = _claim_db(session)
    except redis.ConnectionError as exc:  # the standards say the real server runs here: fail, not skip
        raise AssertionError(f"Redis is not reachable at {SERVER}: {exc}") from exc
    target = RedisTarget(url=f"{SERVER}/{db}", prefix=f"chainsync-test-{session}:", db=db)
    try:
        yield target
    finally:
        target.delete_own_keys()
        _release_db(db, session)


@pytest.fixture
def redis_prefix(redis_target: RedisTarget) -> Iterator[RedisTarget]:
    """A key prefix of this test's own (under the session's), its keys deleted after the test."""
    target = RedisTarget(
        url=redis_target.url, prefix=f"{redis_target.prefix}{uuid.uuid4().hex[:6]}:", db=redis_target.db
    )
    try:
        yield target
    finally:
        target.delete_own_keys()
