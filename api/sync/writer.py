"""Group commit for sync uploads, like :mod:`api.writer` for event ingest.

Uploads from many terminals queue here; one task applies whatever has queued meanwhile in a single ops
store transaction (each batch still all or nothing, in arrival order) and answers each request after the
COMMIT. Twenty terminals then share one fsync instead of taking turns on SQLite's write lock, whose busy
handler sleeps in growing steps and stretches the tail. If the transaction fails, every upload in it gets
the error (a 500; the terminals retry with the same ids) and nothing of the group is stored.

The writer is made on first use per event loop, so the app factory does not need to know about it.
"""

from __future__ import annotations

import asyncio
from functools import partial

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from chainsync.ops_store import sync as store
from chainsync.ops_store.sync import UploadJob, UploadOutcome

_Pending = tuple[UploadJob, "asyncio.Future[UploadOutcome]"]


class UploadWriter:
    def __init__(self, engine: Engine, *, max_group_items: int = 5_000) -> None:
        self.engine = engine
        self.max_group_items = max_group_items
        self.loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task = self.loop.create_task(self._run(), name="sync-upload-writer")

    @property
    def running(self) -> bool:
        return not self._task.done() and self.loop is asyncio.get_running_loop()

    async def apply(self, job: UploadJob) -> UploadOutcome:
        future: asyncio.Future[UploadOutcome] = self.loop.create_future()
        await self._queue.put((job, future))
        return await future

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            size = len(group[0][0].items)
            while size < self.max_group_items and not self._queue.empty():
                item = self._queue.get_nowait()
                group.append(item)
                size += len(item[0].items)
            try:
                outcomes = await run_in_threadpool(
                    partial(store.apply_uploads, self.engine, [job for job, _ in group])
                )
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)


def upload_writer(state: object, engine: Engine) -> UploadWriter:
    """The writer of the running event loop, kept on the app's ``state``."""
    writer: UploadWriter | None = getattr(state, "sync_upload_writer", None)
    if writer is None or not writer.running:
        writer = UploadWriter(engine)
        state.sync_upload_writer = writer  # type: ignore[attr-defined]
    return writer
