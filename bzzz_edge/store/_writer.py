"""The group-commit writer: one dedicated thread commits every write to LMDB. Does I/O.

API (what other modules build on; keep it small)::

    result = await store.writer.write(fn)   # from trio
    pending = store.writer.start(fn)        # from trio: queue it now, ...
    result = await pending.result()         # ... wait for it later (``write`` in two steps)
    result = store.writer.write_sync(fn)    # from any other thread, or before trio runs
    done, result = store.writer.write_now(fn)  # in the calling thread, if the writer is idle

``fn(txn)`` runs in the writer thread inside the batch's write transaction (``txn`` is an
``lmdb.Transaction``; open databases with ``Store.db(name)``) and its result is returned once
the batch is durable (committed with ``sync``: after power loss it is there). Rules for ``fn``:

- act only on ``txn``: the writer may run ``fn`` more than once (a batch is retried after the
  map grows, or without a request whose ``fn`` raised), and only the committed run counts;
- be quick: every write queued behind it waits for it;
- an exception from ``fn`` fails that write only (the caller gets it); the rest of its batch
  commits. ``lmdb`` and ``OverflowError`` failures become ``StorageError``.

Why a thread: py-lmdb ties a write transaction to the thread that opened it and trio's thread
pool does not promise the same thread twice. Why batches: a durable commit costs an fsync
(milliseconds on an SD card), so every write waiting when a commit starts goes into the next
one, up to ``max_batch``; a caller is answered only when its batch is on disk.

Inline commits (``write_now``): a caller on a latency-critical path (a Raft follower's
acknowledgement waits for its write) may commit in its own thread when the writer thread is
idle and recent commits were quick (``INLINE_MAX_SECONDS``): the hand-over to the writer
thread and back (a queue wake-up, the interpreter lock changing threads twice, trio's wake-up
socket, two task switches) costs more CPU than the sync blocks the caller, on a machine whose
cores the node shares. One lock (``_busy``) keeps the writer thread and inline commits apart,
so an inline commit never waits on LMDB's write lock; when it cannot be had, or the commit
fails in any way (map full: growth is the writer thread's), the caller queues the write as
usual.

Map growth: when a batch fills the map, it is aborted, the map doubles (never past
``max_map_size``, see ``_platform``) and the batch runs again. Growing needs no transaction
open in this process, so reads and growth take the ``gate`` (``Gate``), growth for
the few microseconds ``set_mapsize`` needs; commits never hold it, so reads never wait for an
fsync. At the ceiling the batch fails with ``StorageError`` and ``full`` is set (the
``storage`` health check reports it).

Cancellation: a trio caller cancelled while its write is queued still waits for the batch
(shielded, bounded by one commit): once queued, a write cannot be taken back, and its caller
must not believe it failed when it committed.

Bounds: the queue holds at most one request per waiting caller (each caller awaits its own
write), so it is bounded by the callers; the API and services bound those.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import lmdb
import trio

from ..errors import LocalProtocolError, StorageError

__all__ = ["Gate", "PendingWrite", "Writer", "WriterStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BATCH = 512
# ``write_now`` commits in the caller's thread only while commits take less than this (an
# average of recent ones): a slow disk (an SD card's sync takes milliseconds) would block
# the caller's event loop for as long.
INLINE_MAX_SECONDS = 0.002


class Gate:
    """Orders reads against map growth and close: reads hold it for the microseconds a lookup
    takes; growth and close hold it to change the map. Commits never take it.

    Reads take it one at a time (a plain lock), not shared: with several threads in read
    transactions at once, a write transaction aborted on MapFullError and followed by
    ``set_mapsize`` hung py-lmdb 3.0 here (reproduced outside bzzz-edge with four reader
    threads); serialised reads cost nothing under the GIL, where they ran one at a time anyway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enter = self._lock.acquire
        self.leave = self._lock.release

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            yield


@dataclass(slots=True)
class WriterStats:
    """What the writer has done (read by metrics; written only by whoever holds the commit
    lock: the writer thread, or an inline commit)."""

    commits: int = 0
    writes: int = 0
    failed_writes: int = 0
    largest_batch: int = 0
    growths: int = 0
    commit_seconds: float = 0.0  # total time in commits (fsync included)
    inline_commits: int = 0  # of ``commits``, those made by ``write_now``


@dataclass(slots=True, eq=False)
class _Request:
    fn: Callable[[lmdb.Transaction], Any]
    token: trio.lowlevel.TrioToken | None  # a trio caller's run (None: thread_done)
    thread_done: threading.Event | None
    waiter: trio.lowlevel.Task | None = None  # the trio task awaiting the result, once it does
    done: bool = False  # a trio request was delivered (set in the trio thread)
    ok: bool = False
    result: Any = None
    error: BaseException | None = field(default=None)


class PendingWrite:
    """A write queued by ``Writer.start``: ``result`` waits for its batch to be durable."""

    __slots__ = ("_request",)

    def __init__(self, request: _Request) -> None:
        self._request = request

    @property
    def done(self) -> bool:
        """Whether the write's batch committed (or failed): ``result`` returns at once."""
        return self._request.done

    async def result(self) -> Any:
        """What ``fn`` returned, once durable (raises as ``Writer.write`` does); await it
        once. Not cancellable: a queued write cannot be taken back, so a cancellation reaches
        the caller at its next checkpoint (a park without Event or CancelScope: this is on
        every Raft write's path)."""
        request = self._request
        if not request.done:  # (done: no checkpoint, so a caller may collect several at once)
            request.waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        return Writer._outcome(request)


class Writer:
    """The writer thread of one LMDB environment (see the module docstring)."""

    def __init__(self, env: lmdb.Environment, gate: Gate, *, max_map_size: int,
                 max_batch: int = MAX_BATCH, clock: Callable[[], float] | None = None) -> None:
        import time

        self._env = env
        self._gate = gate
        self.max_map_size = max_map_size
        self.max_batch = max_batch  # 1: one commit per write (for comparison)
        self._clock = clock or time.perf_counter
        # A C queue, not a Condition: waking the thread is one call on every write's path.
        # None, put by close after everything queued, stops the thread.
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders writes against close
        self._busy = threading.Lock()  # held while a commit runs (the thread's or inline)
        self._recent_commit = 0.0  # seconds, a moving average (``write_now`` decides on it)
        self.inline_max_seconds = INLINE_MAX_SECONDS  # (0: no inline commit after the first)
        self._closing = False
        self.full = False
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name="bzzz-store-writer", daemon=True)
        self._thread.start()

    # --- callers ------------------------------------------------------------------------------

    async def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn(txn)`` in the next batch; return its result once the batch is durable.

        Raises:
            StorageError: the store is closed, full at its ceiling, or the commit failed.
            Exception: whatever ``fn`` raised (its write is not committed).
        """
        return await self.start(fn).result()  # type: ignore[no-any-return]

    def start(self, fn: Callable[[lmdb.Transaction], Any]) -> PendingWrite:
        """Queue ``fn`` for the next batch now (from trio); await ``result()`` later. The
        writer thread is woken at once, so the sync runs while the caller goes on (a Raft
        leader sends its appends meanwhile).

        Raises:
            StorageError: the store is closed.
        """
        request = _Request(fn, trio.lowlevel.current_trio_token(), None)
        self._submit(request)
        return PendingWrite(request)

    def write_sync(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """``write`` for code outside trio (start-up, close, tests); blocks this thread."""
        if threading.current_thread() is self._thread:
            raise LocalProtocolError("write_sync called from the writer thread would deadlock")
        request = _Request(fn, None, threading.Event())
        self._submit(request)
        assert request.thread_done is not None
        request.thread_done.wait()
        return self._outcome(request)  # type: ignore[no-any-return]

    def write_now(self, fn: Callable[[lmdb.Transaction], T]) -> tuple[bool, T | None]:
        """Commit ``fn`` in the calling thread if that is quick (see the module docstring):
        ``(True, result)`` once durable; ``(False, None)`` when nothing was committed and
        the caller should ``start`` the write instead (busy, slow disk, map full, closed).
        It may commit ahead of writes others queued earlier: a caller whose writes must stay
        in order makes sure none of its own is still queued.

        Raises:
            Exception: whatever ``fn`` raised (nothing committed).
        """
        if self._recent_commit > self.inline_max_seconds or not self._busy.acquire(blocking=False):
            return False, None
        try:
            if self._closing:
                return False, None
            started = self._clock()
            try:
                with self._env.begin(write=True) as txn:
                    result = fn(txn)
            except (lmdb.Error, OverflowError):
                return False, None  # aborted; the writer thread grows the map or reports it
            took = self._clock() - started
            self._commit_took(took)
            self.stats.inline_commits += 1
            self.stats.writes += 1
            return True, result
        finally:
            self._busy.release()

    def _commit_took(self, seconds: float) -> None:
        self.stats.commits += 1
        self.stats.commit_seconds += seconds
        self._recent_commit += (seconds - self._recent_commit) / 8

    def _submit(self, request: _Request) -> None:
        with self._lock:
            if self._closing:
                raise StorageError("the store is closed; no more writes")
            self._queue.put(request)

    @staticmethod
    def _outcome(request: _Request) -> Any:
        if not request.ok:
            assert request.error is not None
            raise request.error
        return request.result

    def close(self) -> None:
        """Commit what is queued, then stop the thread (idempotent)."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._queue.put(None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        with self._busy:  # an inline commit under way finishes first
            pass

    # --- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    stopping = True  # after this batch: nothing was queued behind it
                    break
                batch.append(request)
            try:
                with self._busy:
                    self._commit(batch)
            except BaseException as exc:  # never leave a caller waiting forever
                log.error("store writer failed: %s", exc.__class__.__name__)
                for request in batch:
                    if not request.ok and request.error is None:
                        request.error = StorageError(f"store write failed: {exc!r}")
            self._deliver(batch)

    def _commit(self, batch: list[_Request]) -> None:
        """Commit ``batch``: retried after growth, and without requests whose fn raised."""
        pending = list(batch)
        while pending:
            failed = None
            started = self._clock()
            try:
                with self._env.begin(write=True) as txn:
                    for request in pending:
                        try:
                            request.result = request.fn(txn)
                        except (lmdb.Error, OverflowError):
                            raise
                        except Exception as exc:
                            failed = request
                            request.error = exc
                            raise _Retry from None
                took = self._clock() - started
            except _Retry:
                assert failed is not None
                self.stats.failed_writes += 1
                pending.remove(failed)
                continue
            except lmdb.MapFullError:
                if not self._grow():
                    self._fail(pending, self._full_error())
                    return
                continue
            except lmdb.MapResizedError:
                with self._gate.exclusive():
                    self._env.set_mapsize(0)  # adopt the size another process set
                continue
            except (lmdb.Error, OverflowError) as exc:
                self._fail(pending, StorageError(f"store write failed: {_reason(exc)}"))
                return
            for request in pending:
                request.ok = True
            self._commit_took(took)
            self.stats.writes += len(pending)
            self.stats.largest_batch = max(self.stats.largest_batch, len(pending))
            return

    def _fail(self, pending: list[_Request], error: StorageError) -> None:
        self.stats.failed_writes += len(pending)
        for request in pending:
            request.error = error

    def _full_error(self) -> StorageError:
        return StorageError(
            f"the store is full: its map has reached {self.max_map_size // 2**20} MiB, the "
            "ceiling on this platform; writes are refused (free space with `bzzz-edge store "
            "optimize`, or move the node to a 64-bit system)")

    def _grow(self) -> bool:
        """Double the map, up to the ceiling; False when it is already there."""
        current = int(self._env.info()["map_size"])
        if current >= self.max_map_size:
            if not self.full:
                log.error("store map full at its ceiling of %d MiB; refusing writes",
                          current // 2**20)
            self.full = True
            return False
        new_size = min(current * 2, self.max_map_size)
        try:
            with self._gate.exclusive():
                self._env.set_mapsize(new_size)
        except (lmdb.Error, OverflowError, MemoryError) as exc:
            log.error("store map cannot grow to %d MiB: %s", new_size // 2**20, _reason(exc))
            self.full = True
            self.max_map_size = current
            return False
        self.stats.growths += 1
        log.info("store map full; grew it to %d MiB", new_size // 2**20)
        return True

    def _deliver(self, batch: list[_Request]) -> None:
        by_token: dict[trio.lowlevel.TrioToken, list[_Request]] = {}
        for request in batch:
            if request.ok:
                request.error = None
            if request.thread_done is not None:
                request.thread_done.set()
            elif request.token is not None:
                by_token.setdefault(request.token, []).append(request)
        for token, requests in by_token.items():
            with contextlib.suppress(trio.RunFinishedError):  # that run is over: nobody waits
                token.run_sync_soon(_wake, requests)


class _Retry(Exception):
    """A request's fn raised: the batch is aborted and run again without it."""


def _wake(requests: list[_Request]) -> None:
    for request in requests:
        request.done = True
        if request.waiter is not None:
            trio.lowlevel.reschedule(request.waiter)


def _cannot_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _reason(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__
