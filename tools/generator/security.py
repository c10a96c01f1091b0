"""Security and offline-sync events of the synthetic chain, vectorised over store-days."""

from __future__ import annotations

from typing import get_args

import numpy as np
import polars as pl

from chainsync.schemas.events import SecurityKind
from tools.generator.calendar import CLOSE_HOUR, OPEN_HOUR
from tools.generator.catalog import Catalog, on_duty_window
from tools.generator.ids import uuid4_strings

# The schema's list, so a kind added there is a kind the generator may emit, and no other.
SECURITY_KINDS = list(get_args(SecurityKind))
_K = {k: i for i, k in enumerate(SECURITY_KINDS)}
OUTCOMES = ["success", "failure", "denied", "blocked"]
USER_AGENTS = [
    "ChainSync-POS/4.2 (terminal)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0",
    "python-requests/2.31.0",
    "curl/8.4.0",
]
DETAILS = [
    None,
    "invalid password",
    "unknown user",
    "wrong one-time code",
    "role manager required",
    "too many attempts",
    "ip blocked after repeated failures",
    "local PIN rejected",
]


class _Rows:
    """Column buffers for security events; appended block by block, never row by row."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {
            k: []
            for k in ("store", "day", "sec", "kind", "user", "ip", "agent", "outcome", "detail", "device")
        }

    def add(self, **arrays: np.ndarray | int) -> None:
        sizes = [np.size(v) for v in arrays.values() if np.ndim(v)]
        n = max(sizes) if sizes else 1
        for key in self.cols:
            value = arrays.get(key, -1)
            self.cols[key].append(np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)).copy())

    def concat(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in self.cols.items()}


def security_events(
    rng: np.random.Generator,
    cat: Catalog,
    open_sd: np.ndarray,
    day_epoch: np.ndarray,
    offsets: np.ndarray,
    day_labels: pl.Series,
    ground_truth: list[dict],
) -> pl.DataFrame:
    """Normal logins and logouts of cashiers and managers, typos, device PIN failures, after-hours
    access, and two planted attacks (a brute-force IP and a credential-stuffing campaign) that are
    appended to ``ground_truth``."""
    n_stores, n_days = open_sd.shape
    rows = _Rows()
    # user code: >= 0 a cashier row in cat.cashiers; -2 a store manager; extra usernames are < -10
    cashier_base = np.concatenate([[0], np.cumsum(cat.n_cashiers)[:-1]])

    # --- cashier shifts -----------------------------------------------------------------------
    s_idx, d_idx = np.nonzero(open_sd)
    start, width = on_duty_window(cat.n_cashiers[s_idx], d_idx)
    rep = np.repeat(np.arange(s_idx.size), width)
    j = np.arange(rep.size) - np.repeat(np.cumsum(width) - width, width)
    s, d = s_idx[rep], d_idx[rep]
    cashier = cashier_base[s] + (start[rep] + j) % cat.n_cashiers[s]
    terminal = j % cat.n_terminals[s]
    morning = j % 2 == 0
    login_sec = np.where(morning, OPEN_HOUR * 3600 - 900, 13 * 3600 + 2700) + rng.integers(0, 1200, s.size)
    logout_sec = np.where(morning, 15 * 3600, CLOSE_HOUR * 3600 + 300) + rng.integers(0, 1200, s.size)
    pos = dict(store=s, day=d, user=cashier, device=terminal, agent=0, ip=terminal)
    rows.add(**pos, sec=login_sec, kind=_K["login_success"], outcome=0, detail=0)
    rows.add(**pos, sec=logout_sec, kind=_K["logout"], outcome=0, detail=0)
    typo = rng.random(s.size) < 0.04
    rows.add(
        **{k: v[typo] for k, v in pos.items() if np.ndim(v)},
        agent=0,
        sec=login_sec[typo] - rng.integers(20, 120, typo.sum()),
        kind=_K["login_failure"],
        outcome=1,
        detail=1,
    )
    pin = rng.random(s.size) < 0.01
    rows.add(
        **{k: v[pin] for k, v in pos.items() if np.ndim(v)},
        agent=0,
        sec=login_sec[pin] + rng.integers(600, 20_000, pin.sum()),
        kind=_K["device_login_failure"],
        outcome=1,
        detail=7,
    )
    denied = rng.random(s.size) < 0.003
    rows.add(
        **{k: v[denied] for k, v in pos.items() if np.ndim(v)},
        agent=0,
        sec=login_sec[denied] + rng.integers(600, 20_000, denied.sum()),
        kind=_K["authorization_denied"],
        outcome=2,
        detail=4,
    )

    # --- managers: web login with a second factor on weekdays ------------------------------------
    weekday = (day_epoch // 86400 + 3) % 7 < 5  # 1970-01-01 was a Thursday
    mgr = open_sd & weekday[None, :]
    ms, md = np.nonzero(mgr)
    msec = 9 * 3600 + rng.integers(0, 3600, ms.size)
    mgr_cols: dict[str, np.ndarray | int] = dict(store=ms, day=md, user=-2, device=-1, agent=1, ip=-2)
    rows.add(**mgr_cols, sec=msec, kind=_K["login_success"], outcome=0, detail=0)
    fail2fa = rng.random(ms.size) < 0.02
    rows.add(
        store=ms[fail2fa],
        day=md[fail2fa],
        user=-2,
        device=-1,
        agent=1,
        ip=-2,
        sec=msec[fail2fa] + 20,
        kind=_K["2fa_failure"],
        outcome=1,
        detail=3,
    )
    rows.add(**mgr_cols, sec=msec + 45, kind=_K["2fa_success"], outcome=0, detail=0)

    # --- after-hours access: a cashier logging in at night on a handful of days ----------------------
    n_night = max(2, n_days // 60)
    pick = rng.integers(0, s_idx.size, n_night) if s_idx.size else np.zeros(0, np.int64)
    ns = s_idx[pick]
    rows.add(
        store=ns,
        day=d_idx[pick],
        user=cashier_base[ns] + rng.integers(0, cat.n_cashiers[ns]),
        device=0,
        agent=0,
        ip=0,
        sec=rng.integers(3600, 4 * 3600, n_night),
        kind=_K["login_success"],
        outcome=0,
        detail=0,
    )

    sec_rows = rows.concat()
    extra_users: list[str] = []
    extra_ips: list[str] = []

    # --- planted: brute force from one IP against one store's admin login ----------------------------
    bf_store = int(rng.integers(0, min(3, n_stores)))
    open_days = np.flatnonzero(open_sd[bf_store])
    bf_day = int(open_days[rng.integers(len(open_days) // 2, len(open_days))])
    bf_ip = f"203.0.113.{int(rng.integers(10, 250))}"
    n_bf = int(rng.integers(250, 400))
    bf_sec = 2 * 3600 + 600 + np.sort(rng.integers(0, 15 * 60, n_bf))
    extra_ips.append(bf_ip)
    extra_users += ["admin", "root", "manager"]
    bf = dict(store=bf_store, day=bf_day, device=-1, agent=2, ip=-10)
    rows2 = _Rows()
    rows2.add(
        **bf,
        user=-10 - rng.choice(3, n_bf, p=[0.8, 0.1, 0.1]),
        sec=bf_sec,
        kind=_K["login_failure"],
        outcome=1,
        detail=1,
    )
    rows2.add(**bf, user=-10, sec=bf_sec[50::25] + 1, kind=_K["rate_limited"], outcome=3, detail=5)
    rows2.add(**bf, user=-10, sec=bf_sec[-1:] + 2, kind=_K["ip_blocked"], outcome=3, detail=6)
    bf_minutes = int(bf_sec[-1] - bf_sec[0]) // 60 + 1
    start_utc = day_epoch[bf_day] + bf_sec[0] - offsets[bf_store, bf_day]
    ground_truth.append(
        _truth(
            "brute_force_ip",
            store=cat.stores["store_id"][bf_store],
            ip=bf_ip,
            start=start_utc,
            end=start_utc + int(bf_sec[-1] - bf_sec[0]) + 2,
            description=f"{n_bf} failed logins from {bf_ip} in {bf_minutes} minutes",
        )
    )

    # --- planted: credential stuffing, many usernames from a few IPs ---------------------------------
    cs_day = int(open_days[rng.integers(len(open_days) // 3, len(open_days))])
    cs_ips = [f"198.51.100.{int(x)}" for x in rng.choice(np.arange(2, 250), 4, replace=False)]
    n_names = 400
    user0 = len(extra_users)
    extra_users += [f"user{int(x):05d}@example.com" for x in rng.choice(100_000, n_names, replace=False)]
    ip0 = len(extra_ips)
    extra_ips += cs_ips
    n_cs = 600
    cs_sec = 1 * 3600 + np.sort(rng.integers(0, 90 * 60, n_cs))
    cs_ip = rng.integers(0, len(cs_ips), n_cs)
    cs_store = rng.integers(0, n_stores, n_cs)
    # One campaign clock in UTC, whatever the timezone of the store portal each attempt hits.
    cs_sec = cs_sec + offsets[cs_store, cs_day] - offsets[0, cs_day]
    outcome_fail = np.ones(n_cs, dtype=np.int64)
    outcome_fail[rng.choice(n_cs, 2, replace=False)] = 0
    rows2.add(
        store=cs_store,
        day=cs_day,
        device=-1,
        agent=3,
        ip=-10 - (ip0 + cs_ip),
        user=-10 - (user0 + rng.integers(0, n_names, n_cs)),
        sec=cs_sec,
        kind=np.where(outcome_fail == 1, _K["login_failure"], _K["login_success"]),
        outcome=outcome_fail,
        detail=np.where(outcome_fail == 1, 2, 0),
    )
    for i, ip in enumerate(cs_ips):
        mine = cs_ip == i
        t = day_epoch[cs_day] + cs_sec[mine] - offsets[cs_store[mine], cs_day]
        ground_truth.append(
            _truth(
                "credential_stuffing",
                store=None,
                ip=ip,
                start=int(t.min()),
                end=int(t.max()),
                description=f"credential stuffing from {ip}: {int(mine.sum())} logins over many usernames "
                f"(one of {len(cs_ips)} IPs of the campaign)",
            )
        )

    # --- ordinary failures that are no attack (not in ground_truth) -----------------------------------
    # A password-expiry morning: every cashier of one store fails once to three times from the store's
    # NAT address (the back office's) within an hour, then logs in.
    brng = np.random.default_rng(rng.integers(1 << 62))  # its own stream for the realism below
    nat_store = int(brng.integers(0, n_stores))
    nat_days = np.flatnonzero(open_sd[nat_store])
    nat_day = int(nat_days[brng.integers(0, len(nat_days))])
    staff = cashier_base[nat_store] + np.arange(cat.n_cashiers[nat_store])
    tries = 1 + brng.poisson(0.8, staff.size)
    users = np.repeat(staff, tries)
    nat_sec = OPEN_HOUR * 3600 - 1800 + brng.integers(0, 3600, users.size)
    nat = dict(store=nat_store, day=nat_day, device=-1, agent=1, ip=-2)
    rows2.add(**nat, user=users, sec=nat_sec, kind=_K["login_failure"], outcome=1, detail=1)
    rows2.add(**nat, user=staff, sec=OPEN_HOUR * 3600 + 1900 + brng.integers(0, 600, staff.size),
              kind=_K["login_success"], outcome=0, detail=0)  # fmt: skip
    # A user retrying eight times at a terminal before getting the password right.
    retry_store = int(brng.integers(0, n_stores))
    retry_days = np.flatnonzero(open_sd[retry_store])
    retry_day = int(retry_days[brng.integers(0, len(retry_days))])
    retry_user = cashier_base[retry_store] + int(brng.integers(0, cat.n_cashiers[retry_store]))
    retry = dict(store=retry_store, day=retry_day, device=0, agent=0, ip=0, user=retry_user)
    retry_sec = OPEN_HOUR * 3600 - 600 + np.cumsum(brng.integers(10, 40, 8))
    rows2.add(**retry, sec=retry_sec, kind=_K["login_failure"], outcome=1, detail=1)
    rows2.add(**retry, sec=retry_sec[-1:] + 30, kind=_K["login_success"], outcome=0, detail=0)

    # --- planted: low-and-slow brute force, one try every ten minutes for most of a day ---------------
    slow_store = int(brng.integers(0, n_stores))
    slow_days = np.flatnonzero(open_sd[slow_store])
    slow_day = int(slow_days[brng.integers(len(slow_days) // 2, len(slow_days))])
    slow_ip = f"192.0.2.{int(brng.integers(10, 250))}"
    extra_ips.append(slow_ip)
    n_slow = int(brng.integers(100, 140))
    slow_sec = 600 * np.arange(n_slow) + brng.integers(0, 120, n_slow)
    rows2.add(store=slow_store, day=slow_day, device=-1, agent=2, ip=-10 - (len(extra_ips) - 1),
              user=-10 - brng.choice(3, n_slow), sec=slow_sec, kind=_K["login_failure"], outcome=1,
              detail=1)  # fmt: skip
    slow_start = int(day_epoch[slow_day] + slow_sec[0] - offsets[slow_store, slow_day])
    ground_truth.append(
        _truth(
            "brute_force_ip",
            store=cat.stores["store_id"][slow_store],
            ip=slow_ip,
            start=slow_start,
            end=slow_start + int(slow_sec[-1] - slow_sec[0]) + 1,
            description=f"low-and-slow brute force: {n_slow} failed logins from {slow_ip}, one every ten "
            "minutes",
        )
    )

    extra = rows2.concat()
    allr = {k: np.concatenate([sec_rows[k], extra[k]]) for k in sec_rows}
    return _to_frame(rng, cat, allr, day_epoch, offsets, day_labels, extra_users, extra_ips)


def _truth(
    kind: str, *, store=None, product=None, cashier=None, ip=None, start: int, end: int, description: str
) -> dict:
    return {
        "anomaly_type": kind,
        "store_id": store,
        "product_id": product,
        "cashier_id": cashier,
        "source_ip": ip,
        "start_at": int(start),
        "end_at": int(end),
        "description": description,
    }


def _to_frame(rng, cat, r, day_epoch, offsets, day_labels, extra_users, extra_ips) -> pl.DataFrame:
    n = r["store"].size
    store_ids = cat.stores["store_id"]
    store = store_ids.gather(r["store"])
    lan = pl.format("10.{}.{}.", (r["store"] + 1) // 256, (r["store"] + 1) % 256)
    frame = pl.DataFrame(
        {
            "store_id": store,
            "user": r["user"],
            "ip": r["ip"],
            "device": r["device"],
            "ts": day_epoch[r["day"]] + r["sec"] - offsets[r["store"], r["day"]],
        }
    ).with_columns(
        pl.Series("kind", SECURITY_KINDS).gather(r["kind"]),
        pl.Series("outcome", OUTCOMES).gather(r["outcome"]),
        pl.Series("detail", DETAILS, dtype=pl.String).gather(r["detail"]),
        pl.Series("user_agent", USER_AGENTS).gather(r["agent"]),
    )
    cashier_user = cat.cashiers["username"]
    frame = frame.with_columns(
        username=pl.when(pl.col("user") >= 0)
        .then(cashier_user.gather(np.maximum(r["user"], 0)))
        .when(pl.col("user") == -2)
        .then(pl.concat_str(pl.lit("manager."), pl.col("store_id").str.to_lowercase()))
        .otherwise(
            pl.Series(extra_users or [""]).gather(np.clip(-10 - r["user"], 0, max(len(extra_users) - 1, 0)))
        ),
        source_ip=pl.when(pl.col("ip") >= 0)
        .then(pl.concat_str(lan, (pl.col("ip") + 11).cast(pl.String)))
        .when(pl.col("ip") == -2)
        .then(pl.concat_str(lan, pl.lit("5")))
        .otherwise(
            pl.Series(extra_ips or [""]).gather(np.clip(-10 - r["ip"], 0, max(len(extra_ips) - 1, 0)))
        ),
        device_id=pl.when(pl.col("device") >= 0)
        .then(
            pl.concat_str(
                pl.col("store_id"), pl.lit("-T"), (pl.col("device") + 1).cast(pl.String).str.zfill(2)
            )
        )
        .otherwise(pl.lit("api")),
        occurred_at=pl.from_epoch(pl.col("ts"), time_unit="s").dt.replace_time_zone("UTC"),
    )
    frame = frame.sort("occurred_at", "store_id", "device_id", "kind", "username", maintain_order=True)
    frame = frame.with_columns(uuid4_strings(rng, n))
    return frame.select(
        "event_id",
        "occurred_at",
        "store_id",
        "device_id",
        "kind",
        "username",
        "source_ip",
        "user_agent",
        "outcome",
        "detail",
    )


def sync_events(
    rng: np.random.Generator,
    cat: Catalog,
    open_sd: np.ndarray,
    day_epoch: np.ndarray,
    offsets: np.ndarray,
    day_labels: pl.Series,
) -> pl.DataFrame:
    """Offline episodes of devices: a device loses its connection for a while, then uploads what it
    recorded meanwhile. Most devices are reliable; a few are flaky (and have drifting clocks)."""
    devices = cat.devices
    dev_store = devices["store_id"].str.slice(1).cast(pl.Int64).to_numpy() - 1
    n_dev = devices.height
    flaky = rng.random(n_dev) < 0.08
    p_offline = np.where(flaky, 0.30, 0.04)
    skew_sd = np.where(flaky, 90.0, 1.5)
    is_handheld = (devices["kind"] == "handheld").to_numpy()

    dev_day = open_sd[dev_store] & (rng.random((n_dev, open_sd.shape[1])) < p_offline[:, None])
    dv, dd = np.nonzero(dev_day)
    s = dev_store[dv]
    start = OPEN_HOUR * 3600 + rng.integers(0, 11 * 3600, dv.size)
    hours = np.clip(np.exp(rng.normal(np.log(1.5), 0.8, dv.size)), 10 / 60, 12.0)
    end = start + (hours * 3600).astype(np.int64)
    # Uploads: what the device rang up while offline (terminals) or a few stock scans (handhelds).
    tx_per_hour = cat.store_size[s] * 180 / 2.6 / (CLOSE_HOUR - OPEN_HOUR) / cat.n_terminals[s]
    received = rng.poisson(
        np.where(is_handheld[dv], 2.0, tx_per_hour) * np.minimum(hours, CLOSE_HOUR - start / 3600)
    )
    duplicate = rng.binomial(received, 0.03)
    rejected = rng.binomial(received - duplicate, 0.004)
    conflict = rng.binomial(received - duplicate - rejected, 0.003)
    applied = received - duplicate - rejected - conflict
    duration = 150 + 12 * received + np.exp(rng.normal(4, 1, dv.size)).astype(np.int64)
    skew = np.round(rng.normal(0, skew_sd[dv])).astype(np.int64)
    ts_end = day_epoch[dd] + end - offsets[s, dd]
    ts_start = day_epoch[dd] + start - offsets[s, dd]
    frame = (
        pl.DataFrame(
            {
                "occurred_at": ts_end,
                "store_id": devices["store_id"].gather(dv),
                "device_id": devices["device_id"].gather(dv),
                "day": day_labels.gather(dd),
                "offline_since": ts_start,
                "items_received": received,
                "items_applied": applied,
                "items_duplicate": duplicate,
                "items_rejected": rejected,
                "items_conflict": conflict,
                "duration_ms": duration,
                "clock_skew_seconds": skew,
            }
        )
        .with_columns(
            pl.from_epoch("occurred_at", time_unit="s").dt.replace_time_zone("UTC"),
            pl.from_epoch("offline_since", time_unit="s").dt.replace_time_zone("UTC"),
            session_id=pl.concat_str("device_id", pl.lit("-"), "day"),
        )
        .sort("occurred_at", "device_id")
    )
    frame = frame.with_columns(uuid4_strings(rng, frame.height))
    return frame.select(
        "event_id",
        "occurred_at",
        "store_id",
        "device_id",
        "session_id",
        "offline_since",
        "items_received",
        "items_applied",
        "items_duplicate",
        "items_rejected",
        "items_conflict",
        "duration_ms",
        "clock_skew_seconds",
    )
