"""WebSocket fan-out across API processes through one Redis stream.

Publishing (:meth:`RedisBus.offer`, called by :meth:`api.ws.hub.Hub.publish`, never awaits) queues the
message; one publisher task per process sends what has queued in one pipelined round trip, each message
through :data:`PUBLISH_LUA`, which in one atomic step takes the next deployment-wide ``seq`` (``INCR``) and
appends the message to the stream under the entry id ``<seq>-0`` (``XADD ... MAXLEN ~ <replay depth>``).
So the stream's order is the ``seq`` order, and ``XRANGE`` by ``seq`` is the replay.

One reader task per process follows the stream (``XREAD BLOCK``) and hands every entry, in order, to
:meth:`api.ws.hub.Hub.accept`, which delivers it to this process's subscribers: a sale posted to any
process reaches a client connected to any other.

News that every process finds on its own (a new snapshot, a new ops store event, all polled by each
process's :class:`api.ws.feeds.Notifier`) carries a ``dedupe`` name: the script publishes it only when
its marker key was not set yet (``SET NX EX``), so it is announced once, by whichever process found it
first. Messages about one process (its live metrics) carry that process's ``origin`` and are delivered,
and replayed, only there.

Redis down: :meth:`offer` says no and the hub numbers and delivers the message in this process, as
without Redis; a batch that failed to go out is delivered here the same way; the reader retries every
``RETRY_AFTER_SECONDS``. Each transition is logged once (:class:`api.shared.redis.Availability`). The
script never hands out a ``seq`` at or below one this process has already used, so numbering stays
increasing for this process's clients across an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from api.aio import cancel_all
from api.log import get_logger
from api.shared.redis import READ_TIMEOUT_SECONDS, RETRY_AFTER_SECONDS, Availability, RedisKeys
from api.ws.hub import Hub, Message, wanted_by

log = get_logger("api.shared.bus")

# KEYS: seq counter, stream[, dedupe marker]. ARGV: maxlen, floor (the highest seq the publishing process
# has used), dedupe TTL (s), channel, frame head, frame tail, origin ("" = every process).
# Returns the message's seq, or 0 when the dedupe marker was already set (published by another process).
PUBLISH_LUA = """
if #KEYS == 3 and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then
  return 0
end
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[2])
if seq == 1 then
  -- a fresh counter next to an older stream (the counter key was lost): continue after the stream
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if top[1] then floor = math.max(floor, tonumber(string.match(top[1][1], '^(%d+)'))) end
end
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-0',
  'c', ARGV[4], 'h', ARGV[5], 't', ARGV[6], 'o', ARGV[7])
return seq
"""

DEDUPE_TTL_SECONDS = 3600  # processes find the same news within their poll interval of each other
BLOCK_MS = 1000  # one blocking read waits at most this long (then loops; well under the socket timeout)
READ_COUNT = 1000  # entries per read
BATCH = 512  # messages per pipelined round trip
OUTBOX_SIZE = 100_000  # queued messages beyond this are delivered locally (Redis too slow to keep up)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    channel: str
    head: str
    tail: str
    dedupe: str | None
    origin: str  # "" for every process


class RedisBus:
    """The Redis side of one process's hub (see the module docstring). ``writer`` publishes and replays;
    ``reader`` is a client of its own, held by the blocking stream read."""

    def __init__(
        self, hub: Hub, writer: aioredis.Redis, reader: aioredis.Redis, keys: RedisKeys, maxlen: int
    ) -> None:
        self.hub = hub
        self.writer = writer
        self.reader = reader
        self.keys = keys
        self.maxlen = max(1, maxlen)
        self.origin = uuid.uuid4().hex  # this process, for messages only its own clients receive
        self.available = Availability("ws bus")
        self._script = writer.register_script(PUBLISH_LUA)
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self._last_id: str | None = None  # the last stream entry read; None until Redis first answers
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def up(self) -> bool:
        return not self.available.down

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start following the stream from its current end, and the publisher."""
        await self._catch_up()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop(), name="ws-bus-reader"),
            loop.create_task(self._publish_loop(), name="ws-bus-publisher"),
        ]
        self.hub.bus = self

    async def stop(self) -> None:
        """Detach from the hub, send what is queued (bounded by the socket timeouts), stop the tasks."""
        if self.hub.bus is self:
            self.hub.bus = None
        publisher = self._tasks[1] if len(self._tasks) == 2 else None
        if publisher is not None and not self._outbox.empty():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout=READ_TIMEOUT_SECONDS)
        await cancel_all(self._tasks)
        self._tasks = []

    async def _drained(self) -> None:
        while not self._outbox.empty():
            await asyncio.sleep(0.01)

    async def _catch_up(self) -> bool:
        """Set the read position to the stream's newest entry (and the hub's seq to its seq)."""
        try:
            top = await self.writer.xrevrange(self.keys.ws_stream, "+", "-", count=1)
            counter = await self.writer.get(self.keys.ws_seq)
        except Exception as exc:  # Redis not there yet: the reader tries again
            self.available.failed(exc)
            return False
        self.available.worked()
        self._last_id = str(top[0][0]) if top else "0-0"
        self.hub.last_seq = max(self.hub.last_seq, _seq_of(self._last_id), int(counter or 0))
        return True

    # --- publishing ---------------------------------------------------------------------------
    def offer(self, channel: str, head: str, tail: str, *, dedupe: str | None, this_process: bool) -> bool:
        """Queue a message for the publisher task; False when Redis is known to be down (or the queue is
        full), so the hub delivers it locally."""
        if not self._tasks or not self.available.usable():
            return False
        try:
            origin = self.origin if this_process else ""
            self._outbox.put_nowait(_Outgoing(channel, head, tail, dedupe, origin))
        except asyncio.QueueFull:
            return False
        return True

    async def _publish_loop(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.available.failed(exc)
                for item in batch:  # the ingest was acknowledged already: its subscribers here still hear
                    self.hub.accept(item.channel, item.head, item.tail, self.hub.last_seq + 1)
            else:
                self.available.worked()

    async def _send(self, batch: list[_Outgoing]) -> None:
        """One round trip for the batch: plain EVALSHA (a pipeline given the script object would first ask
        SCRIPT EXISTS, a second round trip each time); a server that lost the script (restarted) gets it
        again, and as NOSCRIPT fails every call of the batch, none ran and the batch is sent again."""
        try:
            await self._send_once(batch)
        except NoScriptError:
            self._script.sha = await self.writer.script_load(PUBLISH_LUA)
            await self._send_once(batch)

    async def _send_once(self, batch: list[_Outgoing]) -> None:
        floor = self.hub.last_seq
        pipe = self.writer.pipeline(transaction=False)
        for item in batch:
            keys = [self.keys.ws_seq, self.keys.ws_stream]
            if item.dedupe is not None:
                keys.append(self.keys.ws_dedupe(item.dedupe))
            args = (self.maxlen, floor, DEDUPE_TTL_SECONDS, item.channel, item.head, item.tail, item.origin)
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        await pipe.execute()

    # --- receiving ----------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        while True:
            if self._last_id is None and not await self._catch_up():
                await asyncio.sleep(RETRY_AFTER_SECONDS)
                continue
            assert self._last_id is not None
            try:
                got: Any = await self.reader.xread(
                    {self.keys.ws_stream: self._last_id}, count=READ_COUNT, block=BLOCK_MS
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.available.failed(exc)
                await asyncio.sleep(RETRY_AFTER_SECONDS)
                continue
            self.available.worked()
            for _stream, entries in got or ():
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    origin = fields.get("o", "")
                    if origin and origin != self.origin:
                        continue  # another process's own news (its metrics)
                    self.hub.accept(fields["c"], fields["h"], fields["t"], _seq_of(entry_id))

    async def replay(
        self, channels: Iterable[str], after_seq: int, upto_seq: int
    ) -> tuple[list[Message], list[str]]:
        """The stream's messages with ``after_seq < seq <= upto_seq`` on ``channels`` (patterns allowed),
        in seq order, and the channels (as asked) that may have lost some: all of them when the stream no
        longer reaches back to ``after_seq + 1`` (a trimmed entry's channel is not known any more)."""
        wanted = set(channels)
        if upto_seq <= after_seq or not wanted:
            return [], []
        try:
            pipe = self.writer.pipeline(transaction=False)
            pipe.xrange(self.keys.ws_stream, min="-", max="+", count=1)
            pipe.xrange(self.keys.ws_stream, min=f"{after_seq + 1}-0", max=f"{upto_seq}-0")
            first, entries = await pipe.execute()
        except Exception as exc:
            self.available.failed(exc)
            raise
        oldest = _seq_of(first[0][0]) if first else None
        gaps = sorted(wanted) if oldest is None or oldest > after_seq + 1 else []
        out = [
            Message(seq=_seq_of(entry_id), channel=f["c"], text=f"{f['h']}{_seq_of(entry_id)}{f['t']}")
            for entry_id, f in entries
            if wanted_by(f["c"], wanted) and f.get("o", "") in ("", self.origin)
        ]
        return out, gaps


def _seq_of(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])
