"""Pushes between API processes over Redis pub/sub: what one process changed that the others must apply
at once rather than at their next periodic re-read (a logout's revoked token, a risk block or unblock,
an admin's IP rule, an AI cache clear).

A push is a hint, never the record: the change is already in the ops store (or needs none) before it is
pushed, and every process still re-reads the store periodically (``CHAINSYNC_REVOCATION_CACHE_SECONDS``,
``CHAINSYNC_RISK_SYNC_SECONDS``), so a push lost to a Redis outage costs only that bound. After the
subscription is (re)established the ``on_resubscribe`` callbacks run (the caches re-read), since pushes
made meanwhile were missed.

:meth:`ControlChannel.send` may be called from any thread (logout and the risk engine run on worker
threads); the pushes go out in order from one task. A process ignores its own pushes (it applied the
change itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from api.aio import cancel_all
from api.log import get_logger
from api.shared.redis import RETRY_AFTER_SECONDS, Availability, RedisKeys

log = get_logger("api.shared.control")

Handler = Callable[[dict[str, Any]], object]  # what it returns is ignored
OUTBOX_SIZE = 10_000


class ControlChannel:
    def __init__(self, writer: aioredis.Redis, listener: aioredis.Redis, keys: RedisKeys) -> None:
        self.writer = writer
        self.listener = listener
        self.keys = keys
        self.origin = uuid.uuid4().hex
        self.available = Availability("control pushes")
        self.handlers: dict[str, Handler] = {}
        self.on_resubscribe: list[Callable[[], None]] = []
        self.subscribed = asyncio.Event()  # set while the subscription is up (tests wait on it)
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def on(self, kind: str, handler: Handler) -> None:
        """Run ``handler(data)`` (on the event loop) for every push of ``kind`` from another process."""
        self.handlers[kind] = handler

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tasks = [
            self._loop.create_task(self._listen_loop(), name="control-listener"),
            self._loop.create_task(self._send_loop(), name="control-sender"),
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        self._loop = None

    def send(self, kind: str, data: dict[str, Any]) -> None:
        """Push ``kind`` with ``data`` (JSON-able) to the other processes; never blocks; from any thread."""
        loop = self._loop
        if loop is None:
            return
        text = json.dumps({"o": self.origin, "k": kind, "d": data}, default=str)
        if threading.get_ident() == self._loop_thread:
            self._enqueue(text)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(self._enqueue, text)

    def _enqueue(self, text: str) -> None:
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:  # Redis has been down long: the periodic re-reads cover these
            log.warning("control_push_dropped", reason="outbox full")

    async def _send_loop(self) -> None:
        while True:
            text = await self._outbox.get()
            while True:
                try:
                    await self.writer.publish(self.keys.control, text)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.available.failed(exc)
                    await asyncio.sleep(RETRY_AFTER_SECONDS)
                    continue  # kept in order; the periodic re-reads cover what waits meanwhile
                self.available.worked()
                break

    async def _listen_loop(self) -> None:
        while True:
            pubsub = self.listener.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.control)
                self.available.worked()
                self.subscribed.set()
                for callback in self.on_resubscribe:
                    callback()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                self.available.failed(exc)
                await asyncio.sleep(RETRY_AFTER_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _dispatch(self, raw: str) -> None:
        try:
            push = json.loads(raw)
            if push.get("o") == self.origin:
                return
            handler = self.handlers.get(push.get("k"))
            if handler is not None:
                handler(push.get("d") or {})
        except Exception as exc:  # one bad push must not end the listener
            log.warning("control_push_failed", error_type=type(exc).__name__)
