"""The Raft log's own thread: writes handed to it (snapshots, large batches, rolls) are made
there in order, their seconds out of the event loop; the event loop waits for each without
blocking. Uses trio and a thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

import trio

__all__ = ["WalPending", "WalWorker"]


class WalPending:
    """A write handed to ``WalWorker``: ``result`` waits until it is durable (``PendingWrite``'s
    shape, for ``_batch.WriteBehind``)."""

    __slots__ = ("_done", "_error", "_token", "_waiter", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self._token = trio.lowlevel.current_trio_token()
        self._done = False
        self._error: BaseException | None = None
        self._waiter: trio.lowlevel.Task | None = None

    @property
    def done(self) -> bool:
        return self._done

    async def result(self) -> None:
        """Once durable (raises what the write raised). Not cancellable: a write handed over
        cannot be taken back."""
        if not self._done:
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        if self._error is not None:
            raise self._error

    def _finish(self, error: BaseException | None) -> None:
        def wake() -> None:
            self._error = error
            self._done = True
            if self._waiter is not None:
                trio.lowlevel.reschedule(self._waiter)

        with contextlib.suppress(trio.RunFinishedError):  # nobody waits any more
            self._token.run_sync_soon(wake)


class WalWorker:
    """One thread performing handed-over writes in order (snapshots, large batches, rolls):
    their seconds stay out of the event loop."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[WalPending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, fn: Callable[[], None]) -> WalPending:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bzzz-raft-wal", daemon=True)
            self._thread.start()
        pending = WalPending(fn)
        self._queue.put(pending)
        return pending

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (pending := self._queue.get()) is not None:
            try:
                pending.fn()
            except BaseException as exc:  # the caller gets it
                pending._finish(exc)
            else:
                pending._finish(None)
