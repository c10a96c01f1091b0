"""Demo users for demo mode: ``admin``, ``manager`` and ``cashier``, password ``settings.demo_password``.

Seeded by the API at start-up in demo mode only, and only when absent, so changes made since survive
restarts. The manager sees the first half of the catalog's stores (S001-S005 while the catalog is empty).

Outside demo mode a demo user that still has the demo password is deactivated at start-up
(:func:`disable_demo_users`): a demo data directory served in production must not keep a known login.
"""

from __future__ import annotations

from sqlalchemy import Engine

from chainsync.ops_store.catalog import store_ids
from chainsync.ops_store.users import Role, get_user, update_user, upsert_user
from chainsync.passwords import verify_password
from chainsync.settings import Settings

DEMO_USERS: tuple[Role, ...] = ("admin", "manager", "cashier")
FALLBACK_MANAGER_STORES = tuple(f"S{i:03d}" for i in range(1, 6))


def manager_stores(engine: Engine) -> list[str]:
    stores = store_ids(engine)
    if not stores:
        return list(FALLBACK_MANAGER_STORES)
    return stores[: max(1, len(stores) // 2)]


def seed_demo_users(engine: Engine, settings: Settings) -> list[str]:
    """Create the missing demo users and return their names; does nothing outside demo mode."""
    if not settings.demo_mode:
        return []
    password = settings.demo_password.get_secret_value()
    created: list[str] = []
    for role in DEMO_USERS:
        if get_user(engine, role) is not None:
            continue
        stores: list[str] = []
        if role == "manager":
            stores = manager_stores(engine)
        elif role == "cashier":
            stores = manager_stores(engine)[:1]
        upsert_user(engine, role, password, role, stores)
        created.append(role)
    return created


def disable_demo_users(engine: Engine, settings: Settings) -> list[str]:
    """Outside demo mode, deactivate every active demo user whose password is still the demo password;
    return their names. A demo user given a password of its own is left alone. Does nothing in demo mode."""
    if settings.demo_mode:
        return []
    password = settings.demo_password.get_secret_value()
    disabled: list[str] = []
    for name in DEMO_USERS:
        user = get_user(engine, name)
        if user is None or not user.is_active or not verify_password(user.password_hash, password):
            continue
        update_user(engine, name, is_active=False)
        disabled.append(name)
    return disabled
