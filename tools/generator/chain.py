"""Generate a seeded synthetic store chain as Parquet files.

Sales and inventory are simulated day by day, vectorised over every store × product, so stock-outs
follow from the stock actually on the shelf; sale lines are written month by month to
``sales_lines/part-NNN.parquet`` and never held in memory all at once.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from rich.progress import Progress
from rich.table import Table

from tools.generator.calendar import (
    CLOSE_HOUR,
    HOURLY_PROFILE,
    OPEN_HOUR,
    WEEKLY_PROFILE,
    holiday_factors,
    utc_offsets,
)
from tools.generator.catalog import CATEGORIES, Catalog, build_catalog, on_duty_window
from tools.generator.ids import uuid4_strings
from tools.generator.requests import request_stats
from tools.generator.security import _truth, security_events, sync_events

FORMAT_VERSION = 1
SALE_KINDS = ["sale", "refund", "void"]
PAYMENT_TYPES = ["card", "cash", "mobile", "gift_card", "other"]
PAYMENT_SHARES = [0.62, 0.20, 0.14, 0.03, 0.01]
INVENTORY_KINDS = ["receipt", "adjustment", "shrinkage", "count"]
MEAN_BASKET_LINES = 2.6
REFUND_RATE, VOID_RATE = 0.018, 0.010
PROMO_ELASTICITY = 3.0  # 20 % off sells 1.6 times as much
COUNT_EVERY_DAYS = 28  # cycle counts: every product of a store is counted every four weeks
SHORT_DELIVERY_RATE = (
    0.06  # share of deliveries the supplier fills only partly (the cause of most stock-outs)
)
REFUND_ABUSE_PER_DAY = 6.0
# Planted store-day sales changes, graded: a spike or drop of each size twice (sizes a manager cares about,
# from a visible 30 % to a tripling), on any open day of any store, holidays included.
SALES_SIZES = (1.3, 1.5, 2.0, 3.0, 0.7, 0.5, 0.3)
SALES_REPEATS = 2
# Planted unrecorded losses (units gone from one store-product over three weeks), graded.
SHRINK_UNITS = (3, 10, 30, 60, 150)
# Ordinary life that is no anomaly (none of it in ground_truth): a store's promotion week, a regional weather
# day hitting a group of stores, a store closed for a day; shelf counts a few units off, single units lost.
PROMOS_PER_STORE_YEAR, PROMO_LIFT = 4, (1.15, 1.4)
WEATHER_DAYS_PER_YEAR, WEATHER_HIT = 6, (0.5, 0.8)
CLOSURES_PER_STORE_YEAR = 1
MISCOUNT_RATE = 0.05  # share of shelf counts off by 1 + Poisson(1) units either way
UNTRACKED_LOSS_RATE = 0.002  # daily chance a store-product loses one unit without a record


@dataclass
class GenerationSummary:
    """What :func:`generate_chain` wrote (row counts per file) and how long it took."""

    out_dir: Path
    stores: int
    products: int
    days: int
    start: date
    end: date
    seed: int
    sale_lines: int = 0
    sale_transactions: int = 0
    inventory_events: int = 0
    security_events: int = 0
    sync_events: int = 0
    anomalies: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"Generated {self.stores} stores × {self.products} products × {self.days} days "
            f"({self.start} … {self.end}, seed {self.seed}) in {self.seconds:.1f} s → {self.out_dir}\n"
            f"  sale lines {self.sale_lines:,} in {self.sale_transactions:,} transactions; "
            f"inventory {self.inventory_events:,}; security {self.security_events:,}; "
            f"sync {self.sync_events:,}; planted anomalies {self.anomalies}"
        )

    def __rich__(self) -> Table:
        table = Table(title=f"Generated chain → {self.out_dir}", show_header=True)
        table.add_column("what")
        table.add_column("value", justify="right")
        rows = [
            ("stores × products × days", f"{self.stores} × {self.products} × {self.days}"),
            ("history", f"{self.start} … {self.end}"),
            ("seed", str(self.seed)),
            ("sale lines", f"{self.sale_lines:,}"),
            ("sale transactions", f"{self.sale_transactions:,}"),
            ("inventory events", f"{self.inventory_events:,}"),
            ("security events", f"{self.security_events:,}"),
            ("sync events", f"{self.sync_events:,}"),
            ("planted anomalies", str(self.anomalies)),
            ("seconds", f"{self.seconds:.1f}"),
        ]
        for k, v in rows:
            table.add_row(k, v)
        return table


@dataclass
class _Plan:
    """Planted anomalies that change the simulation, and their ground-truth rows."""

    store_day_factor: np.ndarray  # (S, D) multiplier (sales spikes and drops)
    abuse: tuple[int, int, int, int] | None  # store, cashier number, first day, last day
    # store, product, first loss day, count day, units to lose, index of its ground_truth row
    shrink: list[tuple[int, int, int, int, int, int]]
    truth: list[dict]
    lost: dict[int, int] = field(default_factory=dict)  # ground_truth row -> units a shrinkage took


def _ordinary_events(rng: np.random.Generator, open_sd: np.ndarray) -> np.ndarray:
    """(stores, days) multipliers of ordinary life, none of it an anomaly: a store's promotion week
    (PROMO_LIFT), a regional weather day that hits a random 40-70 % of the stores at once (WEATHER_HIT),
    and a store closed for a day (0: no sales). Rates per store and year: PROMOS_PER_STORE_YEAR,
    CLOSURES_PER_STORE_YEAR; WEATHER_DAYS_PER_YEAR for the chain."""
    n_stores, n_days = open_sd.shape
    factor = np.ones((n_stores, n_days))
    years = n_days / 365.0
    for s in range(n_stores):
        for _ in range(rng.poisson(PROMOS_PER_STORE_YEAR * years)):
            first = int(rng.integers(n_days))
            factor[s, first : first + int(rng.integers(3, 8))] *= rng.uniform(*PROMO_LIFT)
        for _ in range(rng.poisson(CLOSURES_PER_STORE_YEAR * years)):
            factor[s, int(rng.integers(n_days))] = 0.0
    for _ in range(rng.poisson(WEATHER_DAYS_PER_YEAR * years)):
        hit = rng.random(n_stores) < rng.uniform(0.4, 0.7)
        first = int(rng.integers(n_days))
        factor[hit, first : first + int(rng.integers(1, 3))] *= rng.uniform(*WEATHER_HIT)
    return factor


def day_of(epoch_seconds: int) -> date:
    return date(1970, 1, 1) + timedelta(days=int(epoch_seconds // 86_400))


def _plan_anomalies(rng, cat: Catalog, open_sd, holiday, day_epoch, offsets) -> _Plan:
    n_stores, n_days = open_sd.shape
    factor = np.ones((n_stores, n_days))
    truth: list[dict] = []
    sid = cat.stores["store_id"]
    candidates = [s for s in range(min(3, n_stores))]
    used: set[tuple[int, int]] = set()
    srng = np.random.default_rng(rng.integers(1 << 62))  # its own stream: sizes can change alone
    for mult in [m for m in SALES_SIZES for _ in range(SALES_REPEATS)]:
        s = int(srng.integers(n_stores))
        days = np.flatnonzero(open_sd[s])
        days = days[days >= n_days // 4]
        if days.size == 0:
            continue
        # A free day, not next to another planted one (a short history may have none left: skip).
        free = [int(x) for x in days if not {(s, x - 1), (s, x), (s, x + 1)} & used]
        if not free:
            continue
        d = free[int(srng.integers(len(free)))]
        used.add((s, d))
        factor[s, d] = mult
        start = int(day_epoch[d] - offsets[s, d])
        kind = "sales_spike" if mult > 1 else "sales_drop"
        truth.append(
            _truth(
                kind,
                store=sid[s],
                start=start,
                end=start + 86_400,
                description=f"store-day sales x{mult:g} of the usual on {day_of(day_epoch[d])}",
            )
            | {"magnitude": mult}
        )

    abuse = None
    if n_days >= 40:
        s = int(rng.choice(candidates))
        c = int(rng.integers(0, cat.n_cashiers[s]))
        first = int(rng.integers(max(cat.first_day[s], n_days // 3), n_days - 22))
        abuse = (s, c, first, first + 20)
        cashier_id = f"{sid[s]}-C{c + 1:02d}"
        truth.append(
            _truth(
                "refund_abuse",
                store=sid[s],
                cashier=cashier_id,
                start=int(day_epoch[first] - offsets[s, first]),
                end=int(day_epoch[first + 21] - offsets[s, first + 20])
                if first + 21 < n_days
                else int(day_epoch[first + 20] - offsets[s, first + 20] + 86_400),
                description=f"cashier {cashier_id} rings up about {REFUND_ABUSE_PER_DAY:.0f} "
                "unbacked cash refunds a shift for three weeks",
            )
        )

    shrink: list[tuple[int, int, int, int, int, int]] = []
    fast = np.flatnonzero(~cat.slow_mover & cat.active.all(axis=1))
    for units in SHRINK_UNITS if fast.size else ():
        s = int(rng.integers(n_stores))
        counts = np.arange(cat.first_day[s] + COUNT_EVERY_DAYS, n_days, COUNT_EVERY_DAYS)
        counts = counts[counts >= 21]
        if counts.size == 0:
            continue
        top = fast[np.argsort(-cat.base_lines[s, fast])][: max(3, fast.size // 5)]
        p = int(rng.choice(top))
        if any(x[0] == s and x[1] == p for x in shrink):
            continue
        c = int(rng.choice(counts))
        shrink.append((s, p, c - 20, c, units, len(truth)))
        truth.append(
            _truth(
                "shrinkage",
                store=sid[s],
                product=cat.products["product_id"][p],
                start=int(day_epoch[c - 20] - offsets[s, c - 20]),
                end=int(day_epoch[c] - offsets[s, c] + 8 * 3600),
                description=f"about {units} units disappear without a record over three weeks; the cycle "
                "count finds less than the books expect",
            )
            | {"magnitude": float(units)}
        )
    return _Plan(factor, abuse, shrink, truth)


class _MonthBuffer:
    """Per-day numpy blocks of one month, turned into a Parquet part in one vectorised pass."""

    def __init__(self) -> None:
        self.tx: list[dict[str, np.ndarray]] = []
        self.lines: list[dict[str, np.ndarray]] = []
        self.inv: list[dict[str, np.ndarray]] = []
        self.days: list[int] = []
        self.n_tx = 0

    def add_day(
        self, day: int, tx: dict[str, np.ndarray], lines: dict[str, np.ndarray], inv: dict[str, np.ndarray]
    ) -> None:
        lines = dict(lines, tx=lines["tx"] + self.n_tx)
        self.tx.append(tx)
        self.days.append(day)
        self.lines.append(lines)
        self.inv.append(inv)
        self.n_tx += tx["store"].size

    @staticmethod
    def _cat(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


def generate_chain(
    out_dir: Path,
    *,
    stores: int = 10,
    products: int = 150,
    days: int = 730,
    seed: int = 42,
    end: date | None = None,
    progress: Progress | None = None,
) -> GenerationSummary:
    """Write a synthetic chain of ``stores`` stores and ``products`` products with ``days`` days of
    history ending on ``end`` (default: yesterday, UTC) to ``out_dir``. Money is integer cents,
    timestamps are UTC. The same arguments give byte-identical Parquet files."""
    t0 = time.perf_counter()
    if not 1 <= stores <= 999 or not 1 <= products <= 9999 or days < 28:
        raise ValueError("need 1-999 stores, 1-9999 products and at least 28 days")
    end = end or (datetime.now(UTC).date() - timedelta(days=1))
    start = end - timedelta(days=days - 1)
    day_list = [start + timedelta(days=i) for i in range(days)]
    out_dir = Path(out_dir)
    _clear_output(out_dir)
    (out_dir / "sales_lines").mkdir(parents=True)

    rng = np.random.default_rng([seed, 0])
    cat = build_catalog(rng, stores, products, day_list)
    n_stores, n_products = stores, products

    day_epoch = np.array([(d - date(1970, 1, 1)).days * 86_400 for d in day_list], dtype=np.int64)
    day_labels = pl.Series([d.strftime("%Y%m%d") for d in day_list])
    offsets = utc_offsets(cat.stores["timezone"].to_list(), day_list)
    holiday, _ = holiday_factors(day_list)
    dow = np.array([d.weekday() for d in day_list])
    doy = np.array([d.timetuple().tm_yday for d in day_list])
    open_sd = (np.arange(days)[None, :] >= cat.first_day[:, None]) & (holiday[None, :] > 0)

    plan = _plan_anomalies(rng, cat, open_sd, holiday, day_epoch, offsets)
    weather = np.exp(rng.normal(0, 0.07, (n_stores, days)))
    ordinary = _ordinary_events(np.random.default_rng([seed, 6]), open_sd)
    ordinary[plan.store_day_factor != 1.0] = 1.0  # a planted day keeps the size ground_truth gives it
    store_day = (
        WEEKLY_PROFILE[dow][None, :] * holiday[None, :] * open_sd * weather * ordinary * plan.store_day_factor
    )
    yearly = np.stack(
        [1 + c.yearly_amplitude * np.cos(2 * np.pi * (doy - c.peak_day_of_year) / 365.25) for c in CATEGORIES]
    )
    prod_day = yearly[cat.category_idx] * (1 + PROMO_ELASTICITY * cat.promo_discount) * cat.active  # (P, D)
    trend_sp = cat.trend_rate[:, cat.category_idx]  # (S, P)
    units_per_line = 1 + cat.basket_extra

    stock = np.zeros((n_stores, n_products), dtype=np.int64)
    review_offset = rng.integers(0, 1 << 30, (n_stores, n_products)) % cat.lead_time[None, :]

    task = progress.add_task("Generating chain", total=days + 2) if progress else None
    summary = GenerationSummary(out_dir, stores, products, days, start, end, seed, anomalies=0)
    inv_writer: pq.ParquetWriter | None = None
    buf = _MonthBuffer()
    part = 0
    sale_schema = None

    def flush() -> None:
        nonlocal buf, part, inv_writer, sale_schema
        if not buf.tx:
            return
        mrng = np.random.default_rng([seed, 1, part])
        sales = _sale_frame(mrng, cat, buf, day_epoch, offsets, day_labels)
        table = sales.to_arrow()
        sale_schema = sale_schema or table.schema
        pq.write_table(
            table.cast(sale_schema), out_dir / "sales_lines" / f"part-{part:03d}.parquet", compression="zstd"
        )
        summary.sale_lines += sales.height
        summary.sale_transactions += buf.n_tx
        inv = _inventory_frame(mrng, cat, _MonthBuffer._cat(buf.inv), day_epoch, offsets).to_arrow()
        if inv_writer is None:
            inv_writer = pq.ParquetWriter(out_dir / "inventory.parquet", inv.schema, compression="zstd")
        inv_writer.write_table(inv.cast(inv_writer.schema))
        summary.inventory_events += inv.num_rows
        part += 1
        buf = _MonthBuffer()

    for d in range(days):
        drng = np.random.default_rng([seed, 2, d])
        t_years = (d - days / 2) / 365.0
        trend = np.exp(trend_sp * t_years)
        demand_level = cat.base_lines * prod_day[None, :, d] * trend  # lines/day before weekday and holiday
        mu_units = demand_level * units_per_line[None, :]
        target = np.ceil(mu_units * (cat.lead_time[None, :] + 5) * 1.2).astype(np.int64)
        reorder_point = mu_units * (cat.lead_time[None, :] + 2)
        inv_blocks: list[dict[str, np.ndarray]] = []

        # 1. A store opening today gets its first delivery and an opening count.
        opening = cat.first_day == d
        if opening.any():
            stock[opening] = target[opening]

        # 2. Planted shrinkage: stock vanishes overnight without any record, an even share of the planted
        #    units each day of the window (what the shelf holds at most); the units actually taken are
        #    the incident's magnitude. Beside it, ordinary single units lost without a record.
        for s_, p_, first, last, units, row in plan.shrink:
            if first <= d <= last:
                share = units * (d - first + 1) // 21 - units * (d - first) // 21
                taken = int(min(share, max(stock[s_, p_], 0)))
                stock[s_, p_] -= taken
                plan.lost[row] = plan.lost.get(row, 0) + taken
        lost = (drng.random(stock.shape) < UNTRACKED_LOSS_RATE) & (stock > 0) & open_sd[:, d, None]
        stock -= lost

        # 3. Deliveries every lead-time cycle, topping up to the target when below the reorder point.
        review = ((d + review_offset) % cat.lead_time[None, :] == 0) & open_sd[:, d, None] & ~opening[:, None]
        need = review & (stock <= reorder_point) & (target > stock)
        qty = -(-(target - stock) // cat.case_pack[None, :]) * cat.case_pack[None, :]
        fill = np.where(
            drng.random(stock.shape) < SHORT_DELIVERY_RATE, drng.uniform(0, 0.5, stock.shape), 1.0
        )
        qty = np.where(need, np.floor(qty * fill).astype(np.int64), 0)
        rs, rp = np.nonzero(qty > 0)
        inv_blocks.append(_inv_block(0, rs, rp, d, qty[rs, rp], 6 * 3600, drng))
        stock += qty

        # 4. Cycle counts before opening (and the opening count of a new store).
        since_open = d - cat.first_day
        counted = opening | ((since_open > 0) & (since_open % COUNT_EVERY_DAYS == 0))
        cs = np.repeat(np.flatnonzero(counted), n_products)
        cp = np.tile(np.arange(n_products), int(counted.sum()))
        # A counter is sometimes a few units off; the books keep the true stock.
        off = np.where(drng.random(cs.size) < MISCOUNT_RATE, 1 + drng.poisson(1.0, cs.size), 0)
        off = off * np.where(drng.random(cs.size) < 0.5, 1, -1)
        inv_blocks.append(_inv_block(3, cs, cp, d, np.maximum(stock[cs, cp] + off, 0), 7 * 3600, drng))

        # 5. Sales: Poisson demand in lines, each line 1 + Poisson units, cut off where the shelf empties.
        lam = demand_level * store_day[:, d, None]
        n_lines = drng.poisson(lam)
        cells = np.flatnonzero(n_lines)
        counts = n_lines.ravel()[cells]
        line_cell = np.repeat(cells, counts)
        line_p = line_cell % n_products
        q = 1 + drng.poisson(cat.basket_extra[line_p])
        cum = np.cumsum(q)
        group_start = np.repeat(cum[np.cumsum(counts) - counts] - q[np.cumsum(counts) - counts], counts)
        before = cum - q - group_start
        avail = stock.ravel()[line_cell]
        q = np.minimum(q, avail - before)
        keep = q > 0
        line_cell, line_p, q = line_cell[keep], line_p[keep], q[keep]
        sold = np.bincount(line_cell, weights=q, minlength=stock.size).astype(np.int64)
        stock -= sold.reshape(stock.shape)

        # 6. Recorded shrinkage (damaged or expired goods) after closing.
        damaged = (drng.random(stock.shape) < 0.001) & (stock > 0) & open_sd[:, d, None]
        ds, dp = np.nonzero(damaged)
        loss = np.minimum(stock[ds, dp], 1 + drng.poisson(0.5, ds.size))
        stock[ds, dp] -= loss
        inv_blocks.append(_inv_block(2, ds, dp, d, -loss, CLOSE_HOUR * 3600, drng))
        # Rare recorded corrections (goods found in the back room, a mis-scanned delivery).
        fixed = (drng.random(stock.shape) < 0.001) & open_sd[:, d, None]
        fs, fp = np.nonzero(fixed)
        delta = (1 + drng.poisson(1.0, fs.size)) * np.where(drng.random(fs.size) < 0.5, 1, -1)
        delta = np.maximum(delta, -stock[fs, fp])
        fs, fp, delta = fs[delta != 0], fp[delta != 0], delta[delta != 0]
        stock[fs, fp] += delta
        inv_blocks.append(_inv_block(1, fs, fp, d, delta, CLOSE_HOUR * 3600 + 1800, drng))

        tx, lines = _transactions(drng, cat, plan, d, line_cell // n_products, line_p, q)
        buf.add_day(d, tx, lines, {k: np.concatenate([b[k] for b in inv_blocks]) for k in inv_blocks[0]})
        if d == days - 1 or day_list[d + 1].month != day_list[d].month:
            flush()
        if progress and task is not None:
            progress.advance(task)

    if inv_writer is not None:
        inv_writer.close()

    sec_rng = np.random.default_rng([seed, 3])
    security = security_events(sec_rng, cat, open_sd, day_epoch, offsets, day_labels, plan.truth)
    pq.write_table(security.to_arrow(), out_dir / "security.parquet", compression="zstd")
    sync = sync_events(np.random.default_rng([seed, 4]), cat, open_sd, day_epoch, offsets, day_labels)
    pq.write_table(sync.to_arrow(), out_dir / "sync.parquet", compression="zstd")
    requests = request_stats(np.random.default_rng([seed, 5]), open_sd, day_epoch, offsets, plan.truth)
    pq.write_table(requests.to_arrow(), out_dir / "request_stats.parquet", compression="zstd")
    if progress and task is not None:
        progress.advance(task)

    for name, frame in (
        ("stores", cat.stores),
        ("products", cat.products),
        ("cashiers", cat.cashiers),
        ("devices", cat.devices),
    ):
        pq.write_table(frame.to_arrow(), out_dir / f"{name}.parquet", compression="zstd")
    for row, taken in plan.lost.items():
        plan.truth[row]["magnitude"] = float(taken)
    truth = _ground_truth(plan.truth)
    pq.write_table(truth.to_arrow(), out_dir / "ground_truth.parquet", compression="zstd")

    summary.security_events = security.height
    summary.sync_events = sync.height
    summary.anomalies = truth.height
    summary.counts = {
        "stores": stores,
        "products": products,
        "cashiers": cat.cashiers.height,
        "devices": cat.devices.height,
        "sales_lines": summary.sale_lines,
        "sale_transactions": summary.sale_transactions,
        "sales_line_parts": part,
        "inventory": summary.inventory_events,
        "security": summary.security_events,
        "sync": summary.sync_events,
        "request_stats": requests.height,
        "ground_truth": summary.anomalies,
    }
    summary.seconds = time.perf_counter() - t0
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "tools.generator",
        "params": {
            "stores": stores,
            "products": products,
            "days": days,
            "seed": seed,
            "start": start.isoformat(),
            "end": end.isoformat(),
        },
        "seed": seed,
        "row_counts": summary.counts,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if progress and task is not None:
        progress.advance(task)
    return summary


OUTPUT_FILES = [
    "manifest.json",
    "stores.parquet",
    "products.parquet",
    "cashiers.parquet",
    "devices.parquet",
    "inventory.parquet",
    "security.parquet",
    "sync.parquet",
    "request_stats.parquet",
    "ground_truth.parquet",
]


def _clear_output(out_dir: Path) -> None:
    """Remove a previous chain from ``out_dir``; refuse to touch a directory holding anything else."""
    if not out_dir.exists():
        return
    foreign = [p.name for p in out_dir.iterdir() if p.name not in OUTPUT_FILES and p.name != "sales_lines"]
    if foreign:
        raise FileExistsError(
            f"{out_dir} holds files that are not a generated chain: {', '.join(sorted(foreign))}"
        )
    shutil.rmtree(out_dir / "sales_lines", ignore_errors=True)
    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _inv_block(
    kind: int, s: np.ndarray, p: np.ndarray, d: int, value: np.ndarray, hour_sec: int, rng
) -> dict:
    n = s.size
    return {
        "kind": np.full(n, kind, np.int8),
        "store": s.astype(np.int32),
        "product": p.astype(np.int32),
        "day": np.full(n, d, np.int32),
        "sec": hour_sec + rng.integers(0, 1800, n),
        "value": np.asarray(value, dtype=np.int64),
    }


def _transactions(rng, cat: Catalog, plan: _Plan, d: int, line_s, line_p, q):
    """Group one day's sale lines into till transactions and add refunds, voids and planted refund abuse.

    Returns transaction columns (store, seconds after local midnight, device, cashier, kind, payment)
    and line columns (tx index, product, quantity, unit price, discount)."""
    n_stores = cat.n_terminals.size
    lines_per_store = np.bincount(line_s, minlength=n_stores)
    n_tx = np.where(
        lines_per_store > 0, np.maximum(1, np.round(lines_per_store / MEAN_BASKET_LINES)), 0
    ).astype(np.int64)
    tx_base = np.cumsum(n_tx) - n_tx
    key = tx_base[line_s] + (rng.random(line_s.size) * n_tx[line_s]).astype(np.int64)
    used, line_tx = np.unique(key, return_inverse=True)
    tx_store = np.searchsorted(tx_base, used, side="right") - 1
    # stores with zero transactions share tx_base with the next store: searchsorted picks the right one
    n = used.size
    price = cat.price[line_p, d]
    discount = np.round(q * price * cat.promo_discount[line_p, d]).astype(np.int64)
    sec = _shop_seconds(rng, n)
    device = (rng.random(n) * cat.n_terminals[tx_store]).astype(np.int64)
    start, width = on_duty_window(cat.n_cashiers[tx_store], np.full(n, d))
    cashier = (start + (rng.random(n) * width).astype(np.int64)) % cat.n_cashiers[tx_store]
    payment = rng.choice(len(PAYMENT_TYPES), n, p=PAYMENT_SHARES)
    tx = {
        "store": tx_store,
        "sec": sec,
        "device": device,
        "cashier": cashier,
        "kind": np.zeros(n, np.int8),
        "payment": payment,
    }
    lines = {"tx": line_tx, "product": line_p, "quantity": q, "price": price, "discount": discount}
    if n == 0:
        return _finish(tx, lines)

    # Voids: a transaction rung up and cancelled a few minutes before it was rung up again.
    void_tx = np.unique(rng.choice(n, rng.binomial(n, VOID_RATE)))
    void_map = np.full(n, -1)
    void_map[void_tx] = n + np.arange(void_tx.size)
    copy = np.flatnonzero(void_map[line_tx] >= 0)
    tx = _append(
        tx, {k: v[void_tx] for k, v in tx.items()}, sec_shift=-rng.integers(60, 300, void_tx.size), kind=2
    )
    lines = {
        k: np.concatenate([v, void_map[line_tx[copy]] if k == "tx" else v[copy]]) for k, v in lines.items()
    }

    # Refunds: one earlier purchase brought back, at any till and time.
    n_ref = rng.binomial(n_tx, REFUND_RATE)
    ref_store = np.repeat(np.arange(n_stores), n_ref)
    store_line0 = np.cumsum(lines_per_store) - lines_per_store
    src = store_line0[ref_store] + (rng.random(ref_store.size) * lines_per_store[ref_store]).astype(np.int64)
    tx, lines = _add_single_lines(
        rng, cat, d, tx, lines, ref_store, line_p[src], q[src], price[src], discount[src], None
    )

    # Planted refund abuse: one cashier refunding pricey items to cash on every shift of a few weeks.
    if plan.abuse and plan.abuse[2] <= d <= plan.abuse[3]:
        s, c, _, _ = plan.abuse
        st, wd = on_duty_window(cat.n_cashiers[s : s + 1], np.array([d]))
        on_duty = (c - st[0]) % cat.n_cashiers[s] < wd[0]
        k = int(rng.poisson(REFUND_ABUSE_PER_DAY)) if on_duty and lines_per_store[s] else 0
        if k:
            w = cat.price[:, d] * cat.active[:, d]
            p = rng.choice(cat.price.shape[0], k, p=w / w.sum())
            tx, lines = _add_single_lines(
                rng,
                cat,
                d,
                tx,
                lines,
                np.full(k, s),
                p,
                np.ones(k, np.int64),
                cat.price[p, d],
                np.zeros(k, np.int64),
                c,
            )
    return _finish(tx, lines)


def _add_single_lines(rng, cat, d, tx, lines, store, product, qty, price, discount, cashier):
    k = store.size
    n0 = tx["store"].size
    start, width = on_duty_window(cat.n_cashiers[store], np.full(k, d))
    if cashier is None:
        cash = (start + (rng.random(k) * width).astype(np.int64)) % cat.n_cashiers[store]
        payment = rng.choice(len(PAYMENT_TYPES), k, p=PAYMENT_SHARES)
    else:
        cash = np.full(k, cashier)
        payment = rng.choice(np.array([1, 3]), k, p=[0.75, 0.25])  # cash or gift card
    new_tx = {
        "store": store,
        "sec": _shop_seconds(rng, k),
        "device": (rng.random(k) * cat.n_terminals[store]).astype(np.int64),
        "cashier": cash,
        "kind": np.ones(k, np.int8),
        "payment": payment,
    }
    tx = {key: np.concatenate([tx[key], new_tx[key]]) for key in tx}
    new_lines = {
        "tx": n0 + np.arange(k),
        "product": product,
        "quantity": qty,
        "price": price,
        "discount": discount,
    }
    lines = {key: np.concatenate([lines[key], new_lines[key]]) for key in lines}
    return tx, lines


def _append(tx, extra, *, sec_shift, kind):
    extra = dict(
        extra,
        sec=np.maximum(OPEN_HOUR * 3600, extra["sec"] + sec_shift),
        kind=np.full(extra["store"].size, kind, np.int8),
    )
    return {k: np.concatenate([tx[k], extra[k]]) for k in tx}


def _shop_seconds(rng, n: int) -> np.ndarray:
    hour = rng.choice(HOURLY_PROFILE.size, n, p=HOURLY_PROFILE)
    return (OPEN_HOUR + hour) * 3600 + rng.integers(0, 3600, n)


def _finish(tx, lines):
    """Order transactions by store and time (their number within the store-day) and lines by transaction."""
    order = np.lexsort((tx["sec"], tx["store"]))
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(order.size)
    tx = {k: v[order] for k, v in tx.items()}
    first = np.searchsorted(tx["store"], tx["store"], side="left")
    tx["number"] = np.arange(order.size) - first + 1
    lines = dict(lines, tx=rank_of[lines["tx"]])
    lorder = np.argsort(lines["tx"], kind="stable")
    lines = {k: v[lorder] for k, v in lines.items()}
    lfirst = np.searchsorted(lines["tx"], lines["tx"], side="left")
    lines["line_no"] = np.arange(lines["tx"].size) - lfirst + 1
    return tx, lines


def _sale_frame(rng, cat: Catalog, buf: _MonthBuffer, day_epoch, offsets, day_labels) -> pl.DataFrame:
    tx_days = np.concatenate(
        [np.full(t["store"].size, _day, np.int64) for t, _day in zip(buf.tx, buf.days, strict=True)]
    )
    tx = _MonthBuffer._cat(buf.tx)
    lines = _MonthBuffer._cat(buf.lines)
    store_ids = cat.stores["store_id"]
    s = tx["store"]
    tx_frame = pl.DataFrame(
        {
            "event_id": uuid4_strings(rng, s.size),
            "store_id": store_ids.gather(s),
            "day": day_labels.gather(tx_days),
            "number": tx["number"],
            "device": tx["device"] + 1,
            "cashier": tx["cashier"] + 1,
            "ts": day_epoch[tx_days] + tx["sec"] - offsets[s, tx_days],
            "kind": pl.Series(SALE_KINDS).gather(tx["kind"]),
            "payment_type": pl.Series(PAYMENT_TYPES).gather(tx["payment"]),
        }
    ).select(
        "event_id",
        pl.concat_str(
            "store_id", pl.lit("-"), "day", pl.lit("-"), pl.col("number").cast(pl.String).str.zfill(5)
        ).alias("transaction_id"),
        pl.from_epoch("ts", time_unit="s").dt.replace_time_zone("UTC").alias("occurred_at"),
        "store_id",
        pl.concat_str("store_id", pl.lit("-T"), pl.col("device").cast(pl.String).str.zfill(2)).alias(
            "device_id"
        ),
        pl.concat_str("store_id", pl.lit("-C"), pl.col("cashier").cast(pl.String).str.zfill(2)).alias(
            "cashier_id"
        ),
        "kind",
        "payment_type",
    )
    line_frame = pl.DataFrame(
        {
            "line_no": lines["line_no"].astype(np.int32),
            "product_id": cat.products["product_id"].gather(lines["product"]),
            "quantity": lines["quantity"].astype(np.int32),
            "unit_price_cents": lines["price"].astype(np.int64),
            "discount_cents": lines["discount"].astype(np.int64),
        }
    )
    frame = pl.concat([tx_frame[lines["tx"]], line_frame], how="horizontal")
    return frame.sort("occurred_at", "transaction_id", "line_no")


def _inventory_frame(rng, cat: Catalog, inv: dict[str, np.ndarray], day_epoch, offsets) -> pl.DataFrame:
    s, d = inv["store"], inv["day"]
    is_count = inv["kind"] == 3
    frame = (
        pl.DataFrame(
            {
                "ts": day_epoch[d] + inv["sec"] - offsets[s, d],
                "store_id": cat.stores["store_id"].gather(s),
                "product_id": cat.products["product_id"].gather(inv["product"]),
                "kind": pl.Series(INVENTORY_KINDS).gather(inv["kind"]),
                "value": inv["value"],
                "is_count": is_count,
            }
        )
        .with_columns(
            pl.from_epoch("ts", time_unit="s").dt.replace_time_zone("UTC").alias("occurred_at"),
            pl.concat_str("store_id", pl.lit("-H01")).alias("device_id"),
            pl.when(pl.col("is_count")).then(None).otherwise(pl.col("value")).alias("quantity_delta"),
            pl.when(pl.col("is_count")).then(pl.col("value")).otherwise(None).alias("counted_level"),
        )
        .sort("occurred_at", "store_id", "product_id", "kind")
    )
    frame = frame.with_columns(uuid4_strings(rng, frame.height))
    return frame.select(
        "event_id",
        "occurred_at",
        "store_id",
        "device_id",
        "product_id",
        "kind",
        "quantity_delta",
        "counted_level",
    )


def _ground_truth(rows: list[dict]) -> pl.DataFrame:
    schema = {
        "anomaly_id": pl.String,
        "anomaly_type": pl.String,
        "store_id": pl.String,
        "product_id": pl.String,
        "cashier_id": pl.String,
        "source_ip": pl.String,
        "route": pl.String,  # performance anomalies: "METHOD /route/template"
        "start_at": pl.Int64,
        "end_at": pl.Int64,
        "description": pl.String,
        # sales: the store-day multiplier; shrinkage: units taken; null for the other kinds
        "magnitude": pl.Float64,
    }
    data = [{"magnitude": None} | dict(r, anomaly_id=f"A{i + 1:03d}") for i, r in enumerate(rows)]
    frame = pl.DataFrame(data, schema=schema)
    return frame.with_columns(
        pl.from_epoch(c, time_unit="s").dt.replace_time_zone("UTC") for c in ("start_at", "end_at")
    )
