"""Users and device keys: hashed at rest, revocable, no plaintext anywhere."""

from __future__ import annotations

from sqlalchemy import text

from chainsync.ops_store import get_engine
from chainsync.ops_store.users import (
    create_device_key,
    get_user,
    revoke_device_key,
    upsert_user,
    verify_device_key,
)
from chainsync.passwords import verify_password
from chainsync.settings import Settings


def test_passwords_are_argon2_hashed(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    user = upsert_user(engine, "maria", "s3cret-pass", "manager", ["S002", "S001"])
    assert user.password_hash.startswith("$argon2")
    assert "s3cret-pass" not in user.password_hash
    assert verify_password(user.password_hash, "s3cret-pass")
    assert not verify_password(user.password_hash, "wrong")
    assert not verify_password(None, "s3cret-pass")
    assert get_user(engine, "maria").store_ids == {"S001", "S002"}  # type: ignore[union-attr]


def test_device_keys_are_hashed_bound_and_revocable(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    key = create_device_key(engine, "S003", "S003-T02")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT key_hash FROM device_keys")).scalar_one()
    assert key not in stored
    found = verify_device_key(engine, key)
    assert found is not None and (found.store_id, found.device_id) == ("S003", "S003-T02")
    assert verify_device_key(engine, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert verify_device_key(engine, "not-a-key") is None
    assert revoke_device_key(engine, found.prefix)
    assert verify_device_key(engine, key) is None


def test_device_keys_expire_and_rotate_with_a_grace_period(settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from chainsync.ops_store.users import rotate_device_key

    engine = get_engine(settings.ops_store)
    lapsed = create_device_key(engine, "S001", "POS-09", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert verify_device_key(engine, lapsed) is None
    old = create_device_key(engine, "S001", "POS-01")
    other = create_device_key(engine, "S001", "POS-02")
    new, retiring = rotate_device_key(engine, "S001", "POS-01", grace=timedelta(hours=24))
    assert retiring == [old.removeprefix("csk_").split("_", 1)[0]]
    still = verify_device_key(engine, old)
    assert still is not None and still.expires_at is not None
    assert timedelta(hours=23) < still.expires_at - datetime.now(UTC) <= timedelta(hours=24)
    fresh = verify_device_key(engine, new)
    assert fresh is not None and fresh.expires_at is None and fresh.device_id == "POS-01"
    untouched = verify_device_key(engine, other)  # another terminal's key
    assert untouched is not None and untouched.expires_at is None
    _, retiring_now = rotate_device_key(engine, "S001", "POS-01", grace=timedelta(0))
    assert verify_device_key(engine, old) is None and verify_device_key(engine, new) is None
    assert len(retiring_now) == 2
