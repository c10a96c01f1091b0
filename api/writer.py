"""Group commit: the one writer of the ops store's hot paths (event ingest and sync uploads).

Every request hands its job to the writer of its kind; one task per writer takes whatever has queued up
meanwhile and applies it in a single ops store transaction on the writer's own thread, then answers each
request with its own result after the COMMIT. Concurrent requests then share one transaction and one
fsync instead of queueing on the database's write lock (SQLite's busy handler sleeps), which raises
throughput and cuts tail latency. If the transaction fails, every request in the group gets the error and
nothing of the group is stored.

The commit runs on a dedicated thread (one per writer, so groups stay in order) through asyncio's
executor interface rather than the request thread pool: no capacity limiter to pass, and the thread keeps
its database connection warm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from sqlalchemy import Engine

from chainsync.ops_store import sale_rules
from chainsync.ops_store.events import InboxRow
from chainsync.ops_store.sale_rules import Outcome
from chainsync.ops_store.sync import uploads as sync_uploads
from chainsync.ops_store.sync.uploads import UploadJob, UploadOutcome

Job = TypeVar("Job")
Result = TypeVar("Result")


class GroupCommitWriter(Generic[Job, Result]):
    """Applies queued jobs in groups: ``commit(jobs)`` stores a whole group in one transaction and returns
    one result per job, in order; ``size(job)`` is what a job counts against ``max_group_size``."""

    def __init__(
        self,
        name: str,
        commit: Callable[[list[Job]], list[Result]],
        *,
        size: Callable[[Job], int] = lambda job: 1,
        max_group_size: int = 20_000,
    ) -> None:
        self.name = name
        self.commit = commit
        self.size = size
        self.max_group_size = max_group_size
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Result]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the writer task on the running event loop."""
        self._queue = asyncio.Queue()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the writer task (a group being committed finishes on its thread) and its thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    async def submit(self, job: Job) -> Result:
        """Queue ``job``; its result once the group holding it has committed. A request cancelled while
        waiting does not withdraw its job: it is stored all the same (the client retries by id)."""
        if self._queue is None or not self.running:
            raise RuntimeError(f"{self.name} is not running")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            size = self.size(group[0][0])
            while size < self.max_group_size and not self._queue.empty():
                item = self._queue.get_nowait()
                group.append(item)
                size += self.size(item[0])
            jobs = [job for job, _ in group]
            try:
                results = await loop.run_in_executor(self._thread, self.commit, jobs)
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)


class InboxWriter(GroupCommitWriter[Sequence[InboxRow], list[Outcome]]):
    """Event ingest: each job is one request's valid events; its result their outcomes (status and, when
    the store's own records refuse one, the reasons: :mod:`chainsync.ops_store.sale_rules`)."""

    def __init__(self, engine: Engine, *, max_group_rows: int = 20_000) -> None:
        self.engine = engine
        super().__init__("inbox-writer", self._append, size=len, max_group_size=max_group_rows)

    def _append(self, jobs: list[Sequence[InboxRow]]) -> list[list[Outcome]]:
        rows = [row for job in jobs for row in job]
        # The module attribute is looked up here so tests can make the append fail.
        statuses = sale_rules.append_terminal(self.engine, rows)
        out, start = [], 0
        for job in jobs:
            out.append(statuses[start : start + len(job)])
            start += len(job)
        return out

    async def append(self, rows: Sequence[InboxRow]) -> list[Outcome]:
        """Append ``rows`` (one request's valid events); returns their outcomes once committed."""
        return await self.submit(rows)


class UploadWriter(GroupCommitWriter[UploadJob, UploadOutcome]):
    """Sync uploads: each job is one batch (all or nothing, in arrival order); its result the outcome."""

    def __init__(self, engine: Engine, *, max_group_items: int = 5_000) -> None:
        self.engine = engine
        super().__init__(
            "sync-upload-writer",
            lambda jobs: sync_uploads.apply_uploads(self.engine, jobs),
            size=lambda job: len(job.items),
            max_group_size=max_group_items,
        )

    async def apply(self, job: UploadJob) -> UploadOutcome:
        """Apply one upload batch; its outcome once committed."""
        return await self.submit(job)
