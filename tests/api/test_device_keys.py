"""Device keys on the request path (api/security/device_keys.py): verified once, answered from memory
within the revocation bound, a revocation seen once the bound has passed; wrong keys never remembered."""

from __future__ import annotations

import asyncio

from api.security.device_keys import DeviceKeyCache
from chainsync.ops_store import get_engine
from chainsync.ops_store.users import create_device_key, revoke_device_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_verified_key_is_remembered_until_the_bound_then_revocation_applies(settings) -> None:
    engine = get_engine(settings.ops_store)
    key = create_device_key(engine, "S001", "POS-01")
    clock = Clock()
    cache = DeviceKeyCache(engine, max_age_s=2.0, clock=clock)

    found = asyncio.run(cache.verify(key))
    assert found is not None and (found.store_id, found.device_id) == ("S001", "POS-01")
    revoke_device_key(engine, key[4:].split("_", 1)[0])
    clock.now += 1.9
    assert asyncio.run(cache.verify(key)) == found  # within the bound: from memory
    clock.now += 0.2
    assert asyncio.run(cache.verify(key)) is None  # past it: read again, revoked
    assert asyncio.run(cache.verify(key)) is None


def test_a_wrong_key_is_looked_up_every_time_and_never_cached(settings) -> None:
    engine = get_engine(settings.ops_store)
    key = create_device_key(engine, "S001", "POS-01")
    cache = DeviceKeyCache(engine, max_age_s=60.0, clock=Clock())
    wrong = key[:-2] + ("aa" if not key.endswith("aa") else "bb")
    assert asyncio.run(cache.verify(wrong)) is None
    assert asyncio.run(cache.verify(key)) is not None
    assert asyncio.run(cache.verify(wrong)) is None  # the right key's entry does not open the wrong one
    assert len(cache._verified) == 1


def test_forget_drops_the_remembered_key_at_once(settings) -> None:
    engine = get_engine(settings.ops_store)
    key = create_device_key(engine, "S001", "POS-01")
    cache = DeviceKeyCache(engine, max_age_s=60.0, clock=Clock())
    found = asyncio.run(cache.verify(key))
    assert found is not None
    revoke_device_key(engine, found.prefix)
    cache.forget(found.prefix)
    assert asyncio.run(cache.verify(key)) is None
