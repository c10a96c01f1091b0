"""The notification hub: in-process fan-out of messages to WebSocket connections, by channel.

Channels (who may subscribe is decided in :mod:`api.ws.channels`):

* ``sales:<store_id>``: the live sales ticker of one store (fed by the ingest endpoints).
* ``sync:<store_id>``: offline-sync sessions of one store's devices (fed by the ops store feed).
* ``security``: security events, admins only (fed by the ops store feed).
* ``snapshot``: a new serving snapshot was published (version and table sizes).
* ``anomalies:<store_id>``: anomalies and insights new in the latest snapshot, per store.
* ``metrics``: live API metrics every few seconds.

A subscription may end in ``:*`` (``sales:*``) to follow a channel family across every store.

Every message carries one hub-wide, strictly increasing ``seq``. Each channel keeps its last
``replay_size`` messages, so a client that reconnects and says the last ``seq`` it saw gets what it
missed (or a ``gap`` notice when the buffer no longer reaches back that far).

Publishing never waits: the message is encoded once and offered to each subscriber's bounded queue; a
subscriber whose queue is full is dropped (it is a slow consumer) and the others are unaffected. Each
connection drains its queue in its own task.

Across several API processes a :class:`SharedBus` is attached (:class:`api.shared.bus.RedisBus`, with
``CHAINSYNC_REDIS_URL``): :meth:`Hub.publish` hands the message to it instead of numbering it here, the
bus gives it the deployment-wide ``seq`` and brings it back, on every process, through :meth:`Hub.accept`;
:meth:`Hub.replay_shared` asks it for the replay. Connections, queues and authorization stay local. When
the bus is unavailable (Redis down), publishing falls back to this process's own numbering and fan-out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Close codes (RFC 6455 reserves 4000-4999 for applications).
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_HEARTBEAT_TIMEOUT = 4408
CLOSE_TOO_MANY_FOR_USER = 4429
CLOSE_SLOW_CONSUMER = 4008
CLOSE_SERVER_FULL = 1013  # "try again later"
CLOSE_GOING_AWAY = 1001


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    channel: str
    text: str  # the encoded JSON frame, built once for every subscriber


def frame_parts(channel: str, kind: str, data: dict[str, Any], ts: float) -> tuple[str, str]:
    """The JSON frame ``{"type", "channel", "seq", "ts", "data"}`` split around the ``seq`` value, so it is
    encoded once before the sequence number is known (a shared bus numbers it later)."""
    head = f'{{"type":{json.dumps(kind)},"channel":{json.dumps(channel)},"seq":'
    tail = "," + json.dumps({"ts": ts, "data": data}, separators=(",", ":"), default=str)[1:]
    return head, tail


class SharedBus(Protocol):
    """Fan-out across API processes (see the module docstring); implemented by
    :class:`api.shared.bus.RedisBus`."""

    @property
    def up(self) -> bool:
        """False while the bus's store is known to be unreachable."""
        ...

    def offer(self, channel: str, head: str, tail: str, *, dedupe: str | None, this_process: bool) -> bool:
        """Take the message for publication (False: unavailable, the hub publishes it locally)."""
        ...

    async def replay(
        self, channels: Iterable[str], after_seq: int, upto_seq: int
    ) -> tuple[list[Message], list[str]]:
        """Messages with ``after_seq < seq <= upto_seq`` on ``channels``, and the channels that lost some."""
        ...


class Subscriber:
    """One connection's side of the hub: its subscriptions and its bounded outgoing queue."""

    def __init__(self, subject: str, queue_size: int) -> None:
        self.subject = subject
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.channels: set[str] = set()
        self.dropped = asyncio.Event()  # set when the hub gives up on this consumer

    def offer(self, text: str) -> bool:
        if self.dropped.is_set():
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped.set()
            return False
        return True


def _family(channel: str) -> str:
    return channel.split(":", 1)[0] + ":*" if ":" in channel else channel


def patterns_of(channel: str) -> tuple[str, ...]:
    """The subscription patterns that receive ``channel``: itself and, for a store channel, its family.
    A global channel (``metrics``) is its own only pattern, so it is delivered once."""
    family = _family(channel)
    return (channel,) if family == channel else (channel, family)


def wanted_by(channel: str, patterns: set[str]) -> bool:
    return channel in patterns or _family(channel) in patterns


@dataclass
class HubStats:
    published: Counter[str] = field(default_factory=Counter)  # by channel
    delivered: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # messages lost to dropped slow consumers
    closed: Counter[str] = field(default_factory=Counter)  # connections closed, by reason
    rejected: Counter[str] = field(default_factory=Counter)  # connections refused, by reason
    replayed: int = 0
    accepted: int = 0


class Hub:
    def __init__(self, *, replay_size: int = 1000, max_connections: int = 1000, per_user: int = 10) -> None:
        self.replay_size = replay_size
        self.max_connections = max_connections
        self.per_user = per_user
        self.last_seq = 0  # the newest seq this process has published or received
        self.bus: SharedBus | None = None  # set by the app's lifespan when a shared bus is configured
        self._subs: dict[str, set[Subscriber]] = {}  # channel or family pattern -> subscribers
        self._replay: dict[str, deque[Message]] = {}
        self._evicted: dict[str, int] = {}  # channel -> seq of the newest message pushed out of its buffer
        self._connections: set[Subscriber] = set()
        self._by_user: Counter[str] = Counter()
        self.stats = HubStats()

    # --- connections ----------------------------------------------------------------------
    def admit(self, subject: str, queue_size: int) -> Subscriber | int:
        """Register a connection for ``subject``, or return the close code refusing it."""
        if len(self._connections) >= self.max_connections:
            self.stats.rejected["server_full"] += 1
            return CLOSE_SERVER_FULL
        if self._by_user[subject] >= self.per_user:
            self.stats.rejected["too_many_for_user"] += 1
            return CLOSE_TOO_MANY_FOR_USER
        sub = Subscriber(subject, queue_size)
        self._connections.add(sub)
        self._by_user[subject] += 1
        self.stats.accepted += 1
        return sub

    def release(self, sub: Subscriber, reason: str) -> None:
        if sub not in self._connections:
            return
        self._connections.discard(sub)
        self._by_user[sub.subject] -= 1
        if self._by_user[sub.subject] <= 0:
            del self._by_user[sub.subject]
        self.unsubscribe(sub, list(sub.channels))
        self.stats.closed[reason] += 1

    def subscribe(self, sub: Subscriber, channels: Iterable[str]) -> None:
        """Add ``channels``; a store channel already covered by its ``family:*`` is skipped (and a family
        replaces the store channels it covers), so nothing is delivered twice."""
        for channel in channels:
            if channel in sub.channels or (not channel.endswith(":*") and _family(channel) in sub.channels):
                continue
            if channel.endswith(":*"):
                self.unsubscribe(sub, [c for c in sub.channels if _family(c) == channel])
            sub.channels.add(channel)
            self._subs.setdefault(channel, set()).add(sub)

    def unsubscribe(self, sub: Subscriber, channels: Iterable[str]) -> None:
        for channel in list(channels):
            sub.channels.discard(channel)
            subs = self._subs.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[channel]

    @property
    def connections(self) -> int:
        return len(self._connections)

    def subscribers(self, channel: str) -> int:
        return len(self._subs.get(channel, ()))

    def has_subscribers(self, channel: str) -> bool:
        return any(self._subs.get(pattern) for pattern in patterns_of(channel))

    # --- messages -------------------------------------------------------------------------
    def publish(
        self,
        channel: str,
        kind: str,
        data: dict[str, Any],
        *,
        dedupe: str | None = None,
        this_process: bool = False,
    ) -> Message | None:
        """Encode once and publish on ``channel``. Call on the event loop; it never awaits.

        With a shared bus the message goes through it (and comes back through :meth:`accept`, so None is
        returned); ``dedupe`` names the news it carries, so that when several processes find the same
        news (a snapshot, an ops store event) it is published once; ``this_process`` keeps it to this
        process's subscribers (its live metrics). Without a bus: numbered, kept for replay and offered
        to every subscriber of ``channel`` (and of its family) here, and returned."""
        head, tail = frame_parts(channel, kind, data, time.time())
        if self.bus is not None and self.bus.offer(
            channel, head, tail, dedupe=dedupe, this_process=this_process
        ):
            return None
        return self.accept(channel, head, tail, self.last_seq + 1)

    def accept(self, channel: str, head: str, tail: str, seq: int) -> Message:
        """Keep a numbered message for replay and deliver it here (the shared bus's reader calls this for
        every message of the deployment, in seq order)."""
        self.last_seq = max(self.last_seq, seq)
        message = Message(seq=seq, channel=channel, text=f"{head}{seq}{tail}")
        if self.replay_size:
            buffer = self._replay.get(channel)
            if buffer is None:
                buffer = self._replay[channel] = deque(maxlen=self.replay_size)
            if len(buffer) == buffer.maxlen:
                self._evicted[channel] = buffer[0].seq
            buffer.append(message)
        self.deliver(message)
        return message

    def deliver(self, message: Message) -> None:
        self.stats.published[message.channel] += 1
        for pattern in patterns_of(message.channel):
            for sub in self._subs.get(pattern, ()):
                if sub.offer(message.text):
                    self.stats.delivered[message.channel] += 1
                else:
                    self.stats.dropped[message.channel] += 1

    async def replay_shared(
        self, channels: Iterable[str], after_seq: int, upto_seq: int
    ) -> tuple[list[Message], list[str]]:
        """:meth:`replay` from the shared bus when there is one (what every process published, up to
        ``upto_seq``: the newer ones reach the subscriber live), else from this process's buffers. When
        the bus cannot answer, this process's buffers answer (they hold what it received)."""
        wanted = list(channels)
        if self.bus is not None:
            try:
                out, gaps = await self.bus.replay(wanted, after_seq, upto_seq)
            except Exception:  # the bus logs its own failures; the local buffers are the fallback
                pass
            else:
                self.stats.replayed += len(out)
                return out, gaps
        out, gaps = self.replay(wanted, after_seq)
        return [m for m in out if m.seq <= upto_seq], gaps

    def replay(self, channels: Iterable[str], after_seq: int) -> tuple[list[Message], list[str]]:
        """Messages with ``seq > after_seq`` on ``channels`` (patterns allowed) in seq order, and the
        channels whose buffer no longer reaches back to ``after_seq`` (the client missed some)."""
        wanted = set(channels)
        out: list[Message] = []
        gaps: list[str] = []
        for name, buffer in self._replay.items():
            if not wanted_by(name, wanted):
                continue
            if self._evicted.get(name, 0) > after_seq:  # something after the client's seq is gone
                gaps.append(name)
            out.extend(m for m in buffer if m.seq > after_seq)
        out.sort(key=lambda m: m.seq)
        self.stats.replayed += len(out)
        return out, sorted(gaps)

    def snapshot_stats(self) -> dict[str, Any]:
        channels = sorted(set(self.stats.published) | {c for c in self._subs})
        return {
            "connections": self.connections,
            "max_connections": self.max_connections,
            "max_connections_per_user": self.per_user,
            "users": len(self._by_user),
            "accepted_total": self.stats.accepted,
            "rejected_total": dict(self.stats.rejected),
            "closed_total": dict(self.stats.closed),
            "replayed_total": self.stats.replayed,
            "last_seq": self.last_seq,
            # Where messages go between processes: "redis" (up or not, see api.shared.bus) or "in-process".
            "fanout": "in-process" if self.bus is None else "redis" if self.bus.up else "redis-unavailable",
            "channels": {
                c: {
                    "subscribers": self.subscribers(c),
                    "published": self.stats.published[c],
                    "delivered": self.stats.delivered[c],
                    "dropped": self.stats.dropped[c],
                    "buffered": len(self._replay.get(c, ())),
                }
                for c in channels
            },
            "messages_published_total": sum(self.stats.published.values()),
            "messages_delivered_total": sum(self.stats.delivered.values()),
            "messages_dropped_total": sum(self.stats.dropped.values()),
        }
