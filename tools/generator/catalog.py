"""Stores, products, cashiers and devices of the synthetic chain, with the hidden parameters that
drive their demand (store size, product popularity, slow movers, price history, promotions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

# city, region, IANA timezone
CITIES: list[tuple[str, str, str]] = [
    ("New York", "Northeast", "America/New_York"),
    ("Chicago", "Midwest", "America/Chicago"),
    ("Los Angeles", "West", "America/Los_Angeles"),
    ("Houston", "South", "America/Chicago"),
    ("Phoenix", "Mountain", "America/Phoenix"),
    ("Philadelphia", "Northeast", "America/New_York"),
    ("Denver", "Mountain", "America/Denver"),
    ("Seattle", "West", "America/Los_Angeles"),
    ("Atlanta", "South", "America/New_York"),
    ("Boston", "Northeast", "America/New_York"),
    ("Detroit", "Midwest", "America/Detroit"),
    ("Miami", "South", "America/New_York"),
    ("Minneapolis", "Midwest", "America/Chicago"),
    ("Dallas", "South", "America/Chicago"),
    ("Portland", "West", "America/Los_Angeles"),
    ("Salt Lake City", "Mountain", "America/Denver"),
    ("San Diego", "West", "America/Los_Angeles"),
    ("Pittsburgh", "Northeast", "America/New_York"),
    ("St. Louis", "Midwest", "America/Chicago"),
    ("Nashville", "South", "America/Chicago"),
]


@dataclass(frozen=True)
class Category:
    name: str
    price_range: tuple[int, int]  # list price in cents
    yearly_amplitude: float  # relative swing of the yearly cycle
    peak_day_of_year: int
    basket_extra: float  # mean extra units per line (1 + Poisson(basket_extra))
    items: tuple[str, ...]


CATEGORIES: list[Category] = [
    Category(
        "Grocery", (99, 1299), 0.05, 350, 0.6, ("Pasta", "Rice", "Cereal", "Coffee", "Olive Oil", "Flour")
    ),
    Category(
        "Beverages", (79, 2499), 0.25, 200, 0.8, ("Sparkling Water", "Cola", "Orange Juice", "Iced Tea")
    ),
    Category("Snacks", (99, 699), 0.10, 30, 0.5, ("Potato Chips", "Pretzels", "Granola Bar", "Cookies")),
    Category("Dairy", (89, 899), 0.05, 100, 0.4, ("Milk", "Yogurt", "Cheddar", "Butter", "Cream Cheese")),
    Category("Produce", (49, 799), 0.15, 190, 0.9, ("Apples", "Bananas", "Tomatoes", "Avocados", "Lettuce")),
    Category("Household", (199, 2999), 0.05, 90, 0.2, ("Detergent", "Paper Towels", "Trash Bags", "Sponges")),
    Category("Personal Care", (199, 3499), 0.05, 180, 0.1, ("Shampoo", "Toothpaste", "Sunscreen", "Soap")),
    Category("Electronics", (999, 49999), 0.30, 345, 0.0, ("Headphones", "Charger", "Speaker", "Smartwatch")),
    Category("Toys", (499, 7999), 0.60, 350, 0.1, ("Puzzle", "Building Set", "Doll", "Board Game", "RC Car")),
    Category("Apparel", (799, 8999), 0.20, 300, 0.2, ("T-Shirt", "Jeans", "Hoodie", "Socks", "Jacket")),
    Category("Garden", (299, 14999), 0.55, 130, 0.3, ("Potting Soil", "Hose", "Seeds", "Planter", "Gloves")),
]
BRANDS = ("Acme", "Northwind", "Blue Harbor", "Evergreen", "Summit", "Maple & Co", "Brightside", "Riverstone")

SLOW_MOVER_SHARE = 0.25  # products selling only a few units a week per store
MEAN_STORE_LINES_PER_DAY = 180.0  # sale lines an average store rings up on an ordinary day


@dataclass
class Catalog:
    stores: pl.DataFrame
    products: pl.DataFrame
    cashiers: pl.DataFrame
    devices: pl.DataFrame
    # hidden demand parameters
    store_size: np.ndarray  # (S,) relative store traffic
    first_day: np.ndarray  # (S,) index of the opening day within the history (0 if open before)
    n_terminals: np.ndarray  # (S,)
    n_cashiers: np.ndarray  # (S,)
    category_idx: np.ndarray  # (P,)
    slow_mover: np.ndarray  # (P,) bool
    base_lines: np.ndarray  # (S, P) expected sale lines per ordinary day
    basket_extra: np.ndarray  # (P,)
    lead_time: np.ndarray  # (P,)
    case_pack: np.ndarray  # (P,)
    price: np.ndarray  # (P, D) list price in cents per day
    promo_discount: np.ndarray  # (P, D) fraction off (0 when no promotion)
    active: np.ndarray  # (P, D) bool: listed that day (discontinued products stop)
    trend_rate: np.ndarray  # (S, n_categories) yearly growth rate


def _round_price(cents: np.ndarray) -> np.ndarray:
    # Shelf prices end in 9: 1.49, 12.99.
    return np.maximum(9, np.round(cents / 10) * 10 - 1).astype(np.int64)


def build_catalog(rng: np.random.Generator, n_stores: int, n_products: int, days: list[date]) -> Catalog:
    n_days = len(days)
    start = days[0]

    # --- stores -------------------------------------------------------------------------------
    city_idx = np.arange(n_stores) % len(CITIES)
    branch_no = np.arange(n_stores) // len(CITIES) + 1
    store_size = np.exp(rng.normal(0.0, 0.35, n_stores))
    opened_before = start - timedelta(days=365 * 3)
    open_offset = rng.integers(0, 365 * 10, n_stores)
    opened_on = [opened_before - timedelta(days=int(o)) for o in open_offset]
    # A few newer stores open during the history (never the first three: they carry the anomalies).
    first_day = np.zeros(n_stores, dtype=np.int64)
    late = np.flatnonzero((np.arange(n_stores) >= 3) & (rng.random(n_stores) < 0.08))
    if n_days > 120 and late.size:
        first_day[late] = rng.integers(30, n_days // 2, late.size)
        for i in late:
            opened_on[i] = days[first_day[i]]
    n_terminals = np.clip(np.round(2 + 2.5 * store_size), 2, 8).astype(np.int64)
    n_cashiers = (2 * n_terminals + rng.integers(0, 3, n_stores)).astype(np.int64)
    store_ids = [f"S{i + 1:03d}" for i in range(n_stores)]
    stores = pl.DataFrame(
        {
            "store_id": store_ids,
            "name": [
                f"ChainSync {CITIES[c][0]}" + (f" #{b}" if b > 1 else "")
                for c, b in zip(city_idx, branch_no, strict=True)
            ],
            "region": [CITIES[c][1] for c in city_idx],
            "city": [CITIES[c][0] for c in city_idx],
            "opened_on": opened_on,
            "timezone": [CITIES[c][2] for c in city_idx],
        }
    )

    # --- products -----------------------------------------------------------------------------
    n_cat = len(CATEGORIES)
    category_idx = np.concatenate(
        [np.arange(min(n_cat, n_products)), rng.integers(0, n_cat, max(0, n_products - n_cat))]
    )
    lo = np.array([c.price_range[0] for c in CATEGORIES])[category_idx]
    hi = np.array([c.price_range[1] for c in CATEGORIES])[category_idx]
    current_price = _round_price(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    unit_cost = np.round(current_price * rng.uniform(0.45, 0.75, n_products)).astype(np.int64)
    lead_time = rng.choice(np.array([3, 5, 7, 10, 14]), n_products, p=[0.2, 0.25, 0.3, 0.15, 0.1])
    slow_mover = rng.random(n_products) < SLOW_MOVER_SHARE
    case_pack = np.where(slow_mover, 1, rng.choice(np.array([6, 12, 24]), n_products))
    basket_extra = np.array([c.basket_extra for c in CATEGORIES])[category_idx] * rng.uniform(
        0.5, 1.5, n_products
    )
    basket_extra[slow_mover] = 0.0
    is_active = rng.random(n_products) >= 0.03
    active = np.ones((n_products, n_days), dtype=bool)
    for p in np.flatnonzero(~is_active):  # discontinued products stop selling during the history
        active[p, rng.integers(n_days // 3, n_days) :] = False
    names = [
        f"{BRANDS[b]} {CATEGORIES[c].items[i % len(CATEGORIES[c].items)]}"
        for b, c, i in zip(
            rng.integers(0, len(BRANDS), n_products),
            category_idx,
            rng.integers(0, 100, n_products),
            strict=True,
        )
    ]
    products = pl.DataFrame(
        {
            "product_id": [f"P{i + 1:04d}" for i in range(n_products)],
            "name": names,
            "category": [CATEGORIES[c].name for c in category_idx],
            "unit_cost_cents": unit_cost,
            "price_cents": current_price,
            "lead_time_days": lead_time.astype(np.int64),
            "is_active": is_active,
        }
    )

    # Price history: a few changes (mostly increases) ending at today's catalog price.
    log_steps = np.zeros((n_products, n_days))
    n_changes = rng.poisson(0.8 * n_days / 365, n_products)
    change_p = np.repeat(np.arange(n_products), n_changes)
    change_d = rng.integers(1, n_days, change_p.size)
    np.add.at(
        log_steps, (change_p, change_d), np.log(np.clip(1 + rng.normal(0.04, 0.03, change_p.size), 0.9, 1.15))
    )
    cum = np.cumsum(log_steps, axis=1)
    price = _round_price(current_price[:, None] * np.exp(cum - cum[:, -1:]))

    # Promotions: chain-wide windows of 7 or 14 days with 10-30 % off.
    promo_discount = np.zeros((n_products, n_days))
    n_promos = rng.poisson(4 * n_days / 365, n_products)
    promo_p = np.repeat(np.arange(n_products), n_promos)
    promo_start = rng.integers(0, n_days, promo_p.size)
    promo_len = rng.choice(np.array([7, 14]), promo_p.size)
    promo_off = rng.choice(np.array([0.10, 0.15, 0.20, 0.25, 0.30]), promo_p.size)
    for offset in range(14):  # 14 vectorised passes, one per day within a window
        sel = offset < promo_len
        d = promo_start[sel] + offset
        ok = d < n_days
        promo_discount[promo_p[sel][ok], d[ok]] = promo_off[sel][ok]

    # Demand: fast movers share the store's traffic by a skewed popularity; slow movers sell a few a week.
    popularity = np.exp(rng.normal(0, 1.0, n_products))
    popularity[slow_mover] = 0
    popularity /= max(popularity.sum(), 1e-9)
    slow_rate = np.where(slow_mover, rng.uniform(0.05, 0.45, n_products), 0.0)
    base_lines = (
        MEAN_STORE_LINES_PER_DAY * store_size[:, None] * popularity[None, :]
        + np.sqrt(store_size)[:, None] * slow_rate[None, :]
    )
    trend_rate = rng.normal(0.03, 0.08, (n_stores, n_cat))

    # --- people and devices ---------------------------------------------------------------------
    first_names = (
        "Ana",
        "Ben",
        "Chloe",
        "Dev",
        "Eli",
        "Fatima",
        "Gus",
        "Hana",
        "Ivan",
        "Jade",
        "Kofi",
        "Lena",
    )
    last_names = ("Smith", "Garcia", "Chen", "Okafor", "Novak", "Patel", "Reyes", "Kim", "Muller", "Brown")
    cashier_store = np.repeat(np.arange(n_stores), n_cashiers)
    cashier_no = np.concatenate([np.arange(1, k + 1) for k in n_cashiers])
    cashier_ids = [f"{store_ids[s]}-C{c:02d}" for s, c in zip(cashier_store, cashier_no, strict=True)]
    cashiers = pl.DataFrame(
        {
            "cashier_id": cashier_ids,
            "store_id": [store_ids[s] for s in cashier_store],
            "name": [
                f"{first_names[a]} {last_names[b]}"
                for a, b in zip(
                    rng.integers(0, len(first_names), cashier_store.size),
                    rng.integers(0, len(last_names), cashier_store.size),
                    strict=True,
                )
            ],
            "username": [c.lower() for c in cashier_ids],
        }
    )
    device_rows = []
    for s, sid in enumerate(store_ids):
        device_rows += [
            (f"{sid}-T{t:02d}", sid, "pos_terminal", f"Till {t}") for t in range(1, n_terminals[s] + 1)
        ]
        device_rows.append((f"{sid}-H01", sid, "handheld", "Back-office handheld"))
    devices = pl.DataFrame(device_rows, schema=["device_id", "store_id", "kind", "label"], orient="row")

    return Catalog(
        stores=stores,
        products=products,
        cashiers=cashiers,
        devices=devices,
        store_size=store_size,
        first_day=first_day,
        n_terminals=n_terminals,
        n_cashiers=n_cashiers,
        category_idx=category_idx,
        slow_mover=slow_mover,
        base_lines=base_lines,
        basket_extra=basket_extra,
        lead_time=lead_time.astype(np.int64),
        case_pack=case_pack.astype(np.int64),
        price=price,
        promo_discount=promo_discount,
        active=active,
        trend_rate=trend_rate,
    )


def on_duty_window(n_cashiers: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift rota: on ``day`` a store's cashiers ``(start + j) % n`` for ``j < width`` are on duty
    (everyone works about five days in seven). Returns ``(start, width)`` elementwise."""
    width = np.maximum(1, np.ceil(n_cashiers * 5 / 7)).astype(np.int64)
    start = (day * 3) % n_cashiers
    return start, width
