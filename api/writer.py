"""Group commit for the event inbox.

Every ingest request hands its rows to one writer task per process, which appends whatever has queued
up meanwhile in a single ops store transaction and answers each request with its own statuses after the
COMMIT. Concurrent batches then share one fsync instead of queueing on SQLite's write lock (whose busy
handler sleeps), which raises throughput and cuts tail latency. If the transaction fails, every request
in it gets the error and nothing of the group is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from chainsync.ops_store import events as inbox
from chainsync.ops_store.events import InboxRow, ItemStatus

_Pending = tuple[Sequence[InboxRow], "asyncio.Future[list[ItemStatus]]"]


class InboxWriter:
    def __init__(self, engine: Engine, *, max_group_rows: int = 20_000) -> None:
        self.engine = engine
        self.max_group_rows = max_group_rows
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def append(self, rows: Sequence[InboxRow]) -> list[ItemStatus]:
        """Append ``rows`` (one request's valid events); returns their statuses once committed."""
        if self._task is None or self._task.done():
            raise RuntimeError("inbox writer is not running")
        future: asyncio.Future[list[ItemStatus]] = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            size = len(group[0][0])
            while size < self.max_group_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                group.append(item)
                size += len(item[0])
            await self._commit(group)

    async def _commit(self, group: list[_Pending]) -> None:
        rows = [row for request_rows, _ in group for row in request_rows]
        try:
            # The module attribute is looked up here so tests can make the append fail.
            statuses = await run_in_threadpool(inbox.append_events, self.engine, rows)
        except Exception as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for request_rows, future in group:
            end = start + len(request_rows)
            if not future.done():  # a cancelled request's rows are stored all the same
                future.set_result(statuses[start:end])
            start = end
