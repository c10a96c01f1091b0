"""Risk scoring per client address and per user, in the manner of fail2ban and CrowdSec.

Each signal (a failed login, a bad token, input that looks like an injection, ...) pours a weight into a
leaky bucket: the score halves every ``risk_half_life_minutes``. The weights, half-life, block score and
threat levels are the shared model's (:class:`chainsync.risk.RiskModel`), which the marts score with
too. An address whose score reaches ``risk_block_score`` is blocked, first for ``ban_initial_seconds``
(1 h), then each repeat multiplies the time by ``ban_multiplier`` (1 h -> 1 d -> ...) up to
``ban_max_seconds`` (fail2ban's bantime.increment).
Many distinct usernames tried from one address (credential stuffing) block at once; a success after
failures, and a success outside business hours, score the user. Address reputations live in the ops store,
so they survive a restart and keep decaying. Allowlisted networks are scored and logged, never blocked;
in dry-run mode every decision is logged and none enforced. Addresses that are not IP addresses (a Unix
socket peer, an in-process test client) are scored but never blocked.

Every API process keeps the reputations in memory and shares them through the ops store, in the manner of
the logout revocations (:class:`api.security.RevokedTokens`): a signal writes its address's row at once,
and each process re-reads, at most every ``risk_sync_seconds`` (``stale`` then ``refresh``, on a worker
thread, so a request costs no query), the rows whose block is in force and the rows written since its last
read. Merging them: a block in force elsewhere is enforced here (the later end wins, with its ban count);
a block lifted elsewhere (an admin unblock deletes the row) is lifted here; of two scores the higher
decayed level is kept and the next signal adds to it, so an address's signals on two processes within one
interval count as its worse side, not their sum. With Redis (``CHAINSYNC_REDIS_URL``) a block and an
admin unblock are also pushed to the other processes (``on_block``/``on_unblock``, applied there by
:meth:`RiskEngine.apply_pushed`/:meth:`RiskEngine.lift_pushed`), so they take effect at once; the re-read
stays as the fallback.

So that the table and the memory stay small, each process prunes at most once per ``PRUNE_EVERY_SECONDS``,
started by a re-read on a thread of its own: addresses with no block in force whose score has decayed
below 1 % of the block score go, except that one ever blocked is remembered for
``risk_reputation_retention_days`` (its ban count makes its next block longer).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from api.log import get_logger
from api.security.ipfilter import IpFilter, parse_address
from chainsync.ops_store.audit_log import utcnow
from chainsync.ops_store.reputation import (
    Reputation,
    ReputationRetention,
    decayed_score,
    load_reputations,
    prune_reputations,
    reputation_prunable,
    reputations_to_sync,
    save_reputation,
)
from chainsync.risk import RiskModel, ThreatLevel
from chainsync.settings import Settings

log = get_logger("api.security.risk")

STUFFING_WINDOW = timedelta(minutes=15)
# Each re-read also takes the rows written up to this long before the previous read began: a write may
# commit a moment after its ``updated_at`` was stamped. (Missing one would cost only a score update: the
# rows whose block is in force are read whatever their stamp.)
SYNC_OVERLAP = timedelta(seconds=5)
# Pruning forgotten reputations (store and memory) runs at most this often per process (monotonic seconds).
PRUNE_EVERY_SECONDS = 3600.0


@dataclass
class Bucket:
    score: float = 0.0
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def level(self, now: datetime, half_life_s: float) -> float:
        return decayed_score(self.score, self.at, now, half_life_s)

    def add(self, weight: float, now: datetime, half_life_s: float) -> float:
        self.score = self.level(now, half_life_s) + weight
        self.at = now
        return self.score


@dataclass(frozen=True)
class RiskDecision:
    """What one signal did: the address's and user's scores after it, and any block decided."""

    ip_score: float
    user_score: float | None = None
    blocked_seconds: int | None = None  # a block began (or would have, in dry-run or when allowlisted)
    enforced: bool = False  # the block is in force
    reason: str | None = None  # why this signal is notable (a block, stuffing, success after failures)
    severity: str = "info"  # info | warning | critical

    @property
    def risk_score(self) -> float:
        return round(max(self.ip_score, self.user_score or 0.0), 2)


def _blocked(rep: Reputation | None, now: datetime) -> bool:
    return rep is not None and rep.blocked_until is not None and rep.blocked_until > now


class RiskEngine:
    def __init__(
        self,
        settings: Settings,
        engine: Engine | None,
        ipfilter: IpFilter,
        clock: Callable[[], datetime] | None = None,
        sync_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.ipfilter = ipfilter
        self.clock = clock or (lambda: datetime.now(UTC))
        self.model = RiskModel.from_settings(settings)
        self.half_life_s = self.model.half_life_seconds
        self._lock = threading.RLock()
        self._ips: dict[str, Reputation] = {}
        self._users: dict[str, Bucket] = {}
        self._user_failures: dict[str, deque[datetime]] = {}
        self._tried: dict[str, deque[tuple[datetime, str]]] = {}
        self._critical: deque[datetime] = deque(maxlen=1000)
        start, _, end = settings.business_hours.partition("-")
        self._hours = (int(start), int(end))
        self._tz = ZoneInfo(settings.business_timezone)
        # Sharing with the other API processes (see the module docstring).
        self.sync_clock = sync_clock
        self.max_age_s = settings.risk_sync_seconds
        self._read_at = float("-inf")
        self._refreshing = threading.Lock()
        self._changed_since: datetime | None = None  # re-read the rows written since (wall clock)
        self._seq = 0  # counts local signals, so a re-read does not lift a block made here meanwhile
        self._touched: dict[str, int] = {}  # ip -> ``_seq`` of its last local change
        self.retention = ReputationRetention.from_settings(settings)
        self._pruned_at = float("-inf")  # ``sync_clock`` time the last prune started
        self.pruner: threading.Thread | None = None  # the last prune started (tests join it)
        # Called after a block is stored / when an admin lifts one (pushed to the other processes).
        self.on_block: Callable[[Reputation], None] | None = None
        self.on_unblock: Callable[[str], None] | None = None
        if engine is not None:
            self._changed_since = utcnow() - SYNC_OVERLAP
            for rep in load_reputations(engine):
                self._ips[rep.ip] = rep

    # --- sharing with the other API processes -------------------------------------------------------

    def stale(self) -> bool:
        """True when the reputations were last re-read ``risk_sync_seconds`` ago or more."""
        return self.engine is not None and self.sync_clock() - self._read_at >= self.max_age_s

    def refresh(self) -> None:
        """Re-read the store (one query) and merge; a refresh already under way elsewhere is not repeated."""
        if self.engine is None or not self._refreshing.acquire(blocking=False):
            return
        started = self.sync_clock()
        try:
            now = self.clock()
            with self._lock:
                seen = self._seq
            read_from = utcnow()  # the store's own stamps are wall-clock times
            rows = reputations_to_sync(self.engine, self._changed_since, now)
            self._merge(rows, now, seen)
            self._changed_since = read_from - SYNC_OVERLAP
        except Exception as exc:  # the store is busy: keep what is known, try again after the interval
            log.error("ip_reputation_read_failed", error_type=type(exc).__name__)
        finally:
            self._read_at = started
            self._refreshing.release()
        self._prune_soon()

    def _prune_soon(self) -> None:
        """Start :meth:`prune` on a thread of its own when the last one began ``PRUNE_EVERY_SECONDS`` ago
        or more (the re-read that calls this answers a request; pruning must not hold it up)."""
        with self._lock:
            if self.sync_clock() - self._pruned_at < PRUNE_EVERY_SECONDS:
                return
            self._pruned_at = self.sync_clock()
        self.pruner = threading.Thread(target=self.prune, name="ip-reputation-prune", daemon=True)
        self.pruner.start()

    def prune(self) -> int:
        """Forget the reputations that no longer change any decision (see the module docstring), in the
        store and here; returns how many rows left the store."""
        now = self.clock()
        deleted = 0
        if self.engine is not None:
            try:
                deleted = prune_reputations(self.engine, now, self.retention)
            except Exception as exc:  # the store is busy: the next prune tries again
                log.error("ip_reputation_prune_failed", error_type=type(exc).__name__)
        with self._lock:
            gone = [ip for ip, rep in self._ips.items() if reputation_prunable(rep, now, self.retention)]
            for ip in gone:
                del self._ips[ip]
                self._touched.pop(ip, None)
            quiet = [
                ip for ip, tried in self._tried.items() if not tried or tried[-1][0] < now - STUFFING_WINDOW
            ]
            for ip in quiet:
                del self._tried[ip]
            # Usernames are attacker-chosen (a login with any name scores it): forget the ones whose score
            # has decayed to nothing and whose failures are out of the stuffing window, so a stream of
            # made-up names cannot grow memory without bound.
            faded = [
                name
                for name, bucket in self._users.items()
                if bucket.level(now, self.half_life_s) < self.retention.negligible_score
            ]
            for name in faded:
                del self._users[name]
            old = [
                name
                for name, times in self._user_failures.items()
                if not times or times[-1] < now - STUFFING_WINDOW
            ]
            for name in old:
                del self._user_failures[name]
        if deleted or gone or faded or old:
            log.info(
                "ip_reputation_pruned",
                store_rows=deleted,
                memory_entries=len(gone),
                users_forgotten=len(faded),
            )
        return deleted

    def _merge(self, rows: list[Reputation], now: datetime, seen: int) -> None:
        """Merge reputations read from the store at ``now``; ``seen`` is ``_seq`` before the read."""
        read = {r.ip: r for r in rows}
        with self._lock:
            for row in rows:
                self._merge_row(row, now)
            # A block in force here that the store no longer holds was lifted elsewhere (an admin unblock),
            # unless it was made here after the read began or is not written yet.
            lifted = [
                ip
                for ip, rep in self._ips.items()
                if _blocked(rep, now)
                and not _blocked(read.get(ip), now)
                and self._touched.get(ip, -1) <= seen
            ]
            for ip in lifted:
                again = read.get(ip)
                if again is None:
                    del self._ips[ip]
                    self._touched.pop(ip, None)
                else:  # unblocked, then scored again by a process that never saw the block
                    self._ips[ip] = again
                log.info("ip_unblocked_elsewhere", ip=ip)

    def _merge_row(self, row: Reputation, now: datetime) -> None:
        """Merge one reputation read or pushed from elsewhere (under ``_lock``): the higher decayed score
        and the later block end win."""
        local = self._ips.get(row.ip)
        if local is None:
            self._ips[row.ip] = row
            return
        if Bucket(row.score, row.score_at).level(now, self.half_life_s) > Bucket(
            local.score, local.score_at
        ).level(now, self.half_life_s):
            local.score, local.score_at = row.score, row.score_at
        if row.blocked_until is not None and (
            local.blocked_until is None or row.blocked_until > local.blocked_until
        ):
            local.blocked_until, local.ban_count = row.blocked_until, row.ban_count
            local.last_reason = row.last_reason

    def apply_pushed(self, row: Reputation) -> None:
        """A block another process stored and pushed: enforce it here now (a re-read already under way,
        which may have missed the row, does not lift it)."""
        with self._lock:
            self._merge_row(row, self.clock())
            self._seq += 1
            self._touched[row.ip] = self._seq

    def lift_pushed(self, ip: str) -> None:
        """An admin unblock made in another process: forget ``ip`` here now."""
        with self._lock:
            self._ips.pop(ip, None)
            self._touched.pop(ip, None)
        log.info("ip_unblocked_elsewhere", ip=ip)

    def expire(self) -> None:
        """Make the next request re-read the store (pushes may have been missed)."""
        self._read_at = float("-inf")

    # --- reading ----------------------------------------------------------------------------------

    def ip_score(self, ip: str, now: datetime | None = None) -> float:
        now = now or self.clock()
        with self._lock:
            rep = self._ips.get(ip)
            return 0.0 if rep is None else Bucket(rep.score, rep.score_at).level(now, self.half_life_s)

    def user_score(self, username: str, now: datetime | None = None) -> float:
        now = now or self.clock()
        with self._lock:
            bucket = self._users.get(username)
            return 0.0 if bucket is None else bucket.level(now, self.half_life_s)

    def blocked_for(self, ip: str | None, now: datetime | None = None) -> int:
        """Seconds ``ip`` stays blocked (0: not blocked). Allowlisted addresses are never blocked, and in
        dry-run mode nothing is (not even a block read from the store)."""
        if not ip or self.settings.security_dry_run:
            return 0
        now = now or self.clock()
        with self._lock:
            rep = self._ips.get(ip)
            if rep is None or rep.blocked_until is None or rep.blocked_until <= now:
                return 0
        if self.ipfilter.is_allowlisted(ip):
            return 0
        return max(1, int((rep.blocked_until - now).total_seconds()))

    def active_blocks(self, now: datetime | None = None) -> list[Reputation]:
        now = now or self.clock()
        with self._lock:
            return [r for r in self._ips.values() if r.blocked_until is not None and r.blocked_until > now]

    def threat_level(self, now: datetime | None = None) -> ThreatLevel:
        """``low``, ``elevated``, ``high`` or ``critical`` from the last hour's critical events, the
        addresses blocked now and the highest current score."""
        now = now or self.clock()
        hour_ago = now - timedelta(hours=1)
        with self._lock:
            critical = sum(1 for t in self._critical if t >= hour_ago)
            top = max(
                (Bucket(r.score, r.score_at).level(now, self.half_life_s) for r in self._ips.values()),
                default=0.0,
            )
        blocks = len(self.active_blocks(now))
        return self.model.threat_level(critical_events=critical, blocks=blocks, top_score=top)

    # --- signals ------------------------------------------------------------------------------------

    def observe(
        self, ip: str | None, signal: str, *, username: str | None = None, weight: float | None = None
    ) -> RiskDecision:
        """Pour ``signal`` into the buckets of ``ip`` and ``username``; block ``ip`` when it crosses the
        threshold (or detect credential stuffing)."""
        now = self.clock()
        w = self.model.weight(signal) if weight is None else weight
        reason = None
        severity = "info"
        with self._lock:
            user_score = None
            if username:
                user_score = self._users.setdefault(username, Bucket(0.0, now)).add(w, now, self.half_life_s)
                if signal in ("login_failure", "2fa_failure"):
                    self._user_failures.setdefault(username, deque(maxlen=50)).append(now)
            if ip is None:
                return RiskDecision(ip_score=0.0, user_score=user_score)
            if signal == "login_failure" and username:
                tried = self._tried.setdefault(ip, deque(maxlen=500))
                tried.append((now, username))
                distinct = {u for t, u in tried if t >= now - STUFFING_WINDOW}
                if len(distinct) >= self.model.stuffing_usernames:
                    w += self.model.block_score  # many accounts from one address: block at once
                    reason = f"credential stuffing: {len(distinct)} usernames from one address"
                    severity = "critical"
            rep = self._ips.get(ip) or Reputation(ip=ip, score=0.0, score_at=now)
            bucket = Bucket(rep.score, rep.score_at)
            rep.score = bucket.add(w, now, self.half_life_s)
            rep.score_at = now
            self._ips[ip] = rep
            self._seq += 1
            self._touched[ip] = self._seq
            decision = self._maybe_block(rep, now, reason, severity, signal)
            if decision.severity == "critical":
                self._critical.append(now)
            rep.last_reason = decision.reason or rep.last_reason or signal
            snapshot = Reputation(**vars(rep))
        self._persist(snapshot)
        if decision.enforced and self.on_block is not None:
            self.on_block(snapshot)
        return RiskDecision(
            ip_score=round(snapshot.score, 2),
            user_score=None if user_score is None else round(user_score, 2),
            blocked_seconds=decision.blocked_seconds,
            enforced=decision.enforced,
            reason=decision.reason,
            severity=decision.severity,
        )

    def _maybe_block(
        self, rep: Reputation, now: datetime, reason: str | None, severity: str, signal: str
    ) -> RiskDecision:
        if rep.score < self.model.block_score:
            return RiskDecision(rep.score, reason=reason, severity=severity)
        if rep.blocked_until is not None and rep.blocked_until > now:
            return RiskDecision(rep.score, reason=reason, severity=severity)  # already blocked
        s = self.settings
        # A long quiet spell forgets earlier blocks (fail2ban keeps its ban history for a while, too).
        if rep.blocked_until is not None and now - rep.blocked_until > timedelta(
            seconds=4 * s.ban_max_seconds
        ):
            rep.ban_count = 0
        seconds = int(min(s.ban_initial_seconds * s.ban_multiplier**rep.ban_count, s.ban_max_seconds))
        why = reason or f"risk score {rep.score:.1f} reached {self.model.block_score:g} ({signal})"
        if parse_address(rep.ip) is None:
            return RiskDecision(
                rep.score, reason=f"{why}; not an IP address, not blocked", severity="warning"
            )
        if self.ipfilter.is_allowlisted(rep.ip):
            return RiskDecision(
                rep.score,
                blocked_seconds=seconds,
                reason=f"{why}; allowlisted, not blocked",
                severity="warning",
            )
        if s.security_dry_run:
            return RiskDecision(
                rep.score, blocked_seconds=seconds, reason=f"{why}; dry run, not blocked", severity="warning"
            )
        rep.ban_count += 1
        rep.blocked_until = now + timedelta(seconds=seconds)
        log.warning("ip_banned", ip=rep.ip, seconds=seconds, ban_count=rep.ban_count, reason=why)
        return RiskDecision(
            rep.score, blocked_seconds=seconds, enforced=True, reason=why, severity="critical"
        )

    def login_succeeded(self, ip: str | None, username: str) -> RiskDecision:
        """A successful login. Critical when it follows failures of this user (three or more in the
        stuffing window: a password that was probably guessed); a warning when it comes from an address
        that is itself half-way to a block (the user had no failures: nothing says the password was
        guessed) or outside business hours; otherwise routine. Clears the user's failure history."""
        now = self.clock()
        reasons = []
        severity = "info"
        with self._lock:
            failures = [t for t in self._user_failures.pop(username, deque()) if t >= now - STUFFING_WINDOW]
            ip_level = self.ip_score(ip, now) if ip else 0.0
            bucket = self._users.setdefault(username, Bucket(0.0, now))
            if len(failures) >= 3:
                bucket.add(self.model.block_score, now, self.half_life_s)
                reasons.append(
                    f"success after failures ({len(failures)} for the user, address score {ip_level:.1f})"
                )
                severity = "critical"
                self._critical.append(now)
            elif ip_level >= self.model.block_score / 2:
                bucket.add(2.0, now, self.half_life_s)
                reasons.append(
                    f"login from a high-risk address (score {ip_level:.1f}, no failures for the user)"
                )
                severity = "warning"
            if not self.within_business_hours(now):
                bucket.add(2.0, now, self.half_life_s)
                reasons.append("outside business hours")
                severity = "warning" if severity == "info" else severity
            user_level = bucket.level(now, self.half_life_s)
        return RiskDecision(
            ip_score=round(ip_level, 2),
            user_score=round(user_level, 2),
            reason="; ".join(reasons) or None,
            severity=severity,
        )

    def within_business_hours(self, now: datetime) -> bool:
        start, end = self._hours
        hour = now.astimezone(self._tz).hour
        return start <= hour < end if start <= end else (hour >= start or hour < end)

    def unblock(self, ip: str) -> bool:
        """Forget ``ip`` here; the caller deletes its row, which lifts it on the other processes."""
        with self._lock:
            rep = self._ips.pop(ip, None)
            self._touched.pop(ip, None)
        if self.on_unblock is not None:
            self.on_unblock(ip)
        return rep is not None

    def _persist(self, rep: Reputation) -> None:
        if self.engine is None:
            return
        try:
            save_reputation(self.engine, rep)
        except Exception as exc:  # scoring goes on in memory even if the store is busy
            log.error("ip_reputation_write_failed", error_type=type(exc).__name__)
            with self._lock:  # not in the store: a re-read must not take its absence for an unblock
                self._touched[rep.ip] = sys.maxsize
