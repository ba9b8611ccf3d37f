"""The log service: appends to this node's signed log and serves it to peers. Uses trio.

Appends (``append``, ``record``) go into one bounded queue; a single appender task signs what
is queued, in order, and commits up to ``APPEND_BATCH`` entries with one signed head in one
write of the store's group-commit writer, so a burst of membership changes or store writes
costs one durable commit and one head signature, not one each. Only that task touches the
chain, so a failed commit cannot leave a gap: the chain is reloaded from the store and the
callers of that batch get the error.

What is appended as it happens: membership changes (``follow_members``: a verified peer that
becomes alive is ``peer_joined``, one that dies or leaves is ``peer_left``; rumours and
suspicions are not logged, so a peer cannot fill our log with made-up members; at most
``MAX_PRESENT`` members are tracked as present), the content store's writes (``store_hook``)
and the task changes that concern this node (the task service's state save). The last two are
queued in the store (``queue_in``: the ``log_pending`` database) inside the transaction of
the write whose state they record, so no durable write goes unlogged, even across a crash,
and a crash that loses the write loses its entries with it; the appender signs them from
there (at start, what a previous run left there before anything new) and deletes each in
the transaction of the entry made from it. An event feed that overflowed is logged as
``events_missed`` with the count, never silently.

Peers read the log over RPC (``log.head``, ``log.entries``) and are told of new entries with
``log.notify``; ``Replicator`` (``replication``) does the fetching. Bounds: the queue holds
``MAX_QUEUED`` entries in memory (more are refused with a ``StorageError`` and counted; what
is queued in the store is bounded by the disk, not memory); an RPC answer
holds at most ``SERVE_ENTRIES`` entries and ``SERVE_BYTES`` bytes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack
import trio

from ..errors import BzzzError, DecodeError, StorageError
from ..feed import Overflowed, Subscription
from ..identity import Identity
from ..membership import MemberEvent, Status
from ..store import Store
from ..store._records import StoreChange
from ._chain import LogChain
from ._codec import Entry, SignedHead, canonical_pack, sign_head
from ._types import MEMBER_JOINED, MEMBER_LEFT, STORE_TYPES
from .storage import LogDbs, LogReader, drop_pending, put_pending, write_entries

__all__ = ["APPEND_BATCH", "MAX_QUEUED", "SERVE_BYTES", "SERVE_ENTRIES", "LogService"]

log = logging.getLogger(__name__)

APPEND_BATCH = 256
MAX_QUEUED = 4096
SERVE_ENTRIES = 256
SERVE_BYTES = 512 * 1024
MAX_PRESENT = 4096
RETRY_AFTER = 1.0


@dataclass(slots=True, eq=False)
class _Pending:
    type: str
    data: Mapping[str, Any]
    done: trio.Event | None = None
    key: bytes | None = None  # in ``log_pending``: deleted with the entry made from it
    entry: Entry | None = None
    error: BaseException | None = field(default=None)


class LogService:
    """This node's log: appends, reads, and the RPC methods peers use to replicate it.

    Args:
        store: the node's store, opened with ``storage.DATABASES`` declared.
        identity: whose log this is (the signing key).
        clock: wall-clock seconds (entry timestamps); ``time.time`` by default.
    """

    def __init__(self, store: Store, identity: Identity, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.dbs = LogDbs.of(store.db)
        self.author = identity.node_id
        self._key = identity.private_key
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._wakeup = trio.Event()
        self.appended = trio.Event()  # set (and replaced) after every commit
        self.counters: Counter[str] = Counter()
        self._present: set[bytes] = set()  # members logged as joined, at most MAX_PRESENT
        self._stored_pending = True  # entries may be queued in the store (``queue_in``)
        self.chain = self._load()
        with self.reader() as reader:
            self._sequence = reader.last_pending()  # then only ``queue_in`` touches it
        # Entries a previous run left queued in the store (it died before appending them):
        # appended before anything queued in memory since (``run``).
        self._left_over = self._sequence > 0
        self._committed = self.chain.length

    # --- reading ------------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[LogReader]:
        """A ``LogReader`` on a consistent snapshot (hold it briefly)."""
        with self.store.reading() as txn:
            yield LogReader(txn, self.dbs)

    @property
    def length(self) -> int:
        """Entries committed (the chain may be ahead while a commit is in flight)."""
        return self._committed

    def _load(self) -> LogChain:
        with self.reader() as reader:
            chain = reader.chain(self.author, self._key.public_key().public_bytes_raw())
        assert chain is not None
        return chain

    def head_at(self, length: int | None) -> SignedHead:
        """A head of our log, signed now, at ``length`` entries (None: all of them).

        Raises:
            BzzzError: ``length`` is past the end of the log.
        """
        with self.reader() as reader:
            stored = reader.head(self.author)
            have = 0 if stored is None else stored.length
            if length is None or (stored is not None and length == have):
                if stored is not None:
                    return stored
                length = 0
            if not 0 <= length <= have:
                raise BzzzError(f"the log has {have} entries, not {length}")
            root = reader.root(self.author, length)
        return sign_head(self._key, author=self.author, length=length, root=root,
                         timestamp_ms=self._now_ms())

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- appending ----------------------------------------------------------------------------

    async def append(self, type: str, data: Mapping[str, Any]) -> Entry:
        """Append an entry; returns it once it is durable.

        Raises:
            StorageError: the queue is full or the commit failed.
            DecodeError: a bad type, data with no canonical form, or too large.
        """
        pending = _Pending(type, data, trio.Event())
        self._enqueue(pending)
        assert pending.done is not None
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.entry is not None
        return pending.entry

    def record(self, type: str, data: Mapping[str, Any]) -> None:
        """Queue an entry without waiting (for feed consumers and synchronous callers)."""
        with contextlib.suppress(StorageError):  # counted in _enqueue
            self._enqueue(_Pending(type, data))

    def _enqueue(self, pending: _Pending) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self.counters["append_queue_full"] += 1
            raise StorageError(f"the log's append queue is full ({MAX_QUEUED} entries)")
        self._queue.append(pending)
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit queued appends until cancelled (first what a crash left queued)."""
        task_status.started()
        while True:
            if not self._queue and not self._stored_pending:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            left_over = self._left_over
            if left_over:  # what a crash left in the store goes before anything new
                batch = self._take_stored(APPEND_BATCH)
            else:
                batch = [self._queue.popleft()
                         for _ in range(min(len(self._queue), APPEND_BATCH))]
                batch += self._take_stored(APPEND_BATCH - len(batch))
            if not await self._commit(batch):
                await trio.sleep(RETRY_AFTER)  # a failing store (disk full): no hot loop
            elif left_over:
                self._left_over = self._stored_pending  # a full batch: there may be more

    def _take_stored(self, limit: int) -> list[_Pending]:
        """Entries queued in the store by a hook (oldest first)."""
        self._stored_pending = False
        if limit <= 0:
            self._stored_pending = True
            return []
        with self.reader() as reader:
            rows = reader.pending(limit)
        self._stored_pending = len(rows) == limit
        out = []
        for key, packed in rows:
            try:
                type_, data = msgpack.unpackb(packed, raw=False)
            except (ValueError, TypeError, msgpack.UnpackException):
                type_, data = "events_missed", {"source": "store", "missed": 1}
            out.append(_Pending(str(type_), data if isinstance(data, dict) else {}, key=key))
        return out

    async def flush(self) -> None:
        """Wait until everything queued so far, in memory or in the store, is committed (or
        failed). Needs ``run`` running."""
        while self._queue or self._stored_pending or self.chain.length != self._committed:
            await self.appended.wait()

    async def _commit(self, batch: list[_Pending]) -> bool:
        """Sign and commit ``batch``; False when the store refused it (callers get the error,
        the chain is reloaded, and entries queued in the store stay there for a retry)."""
        now = self._now_ms()
        signed: list[tuple[Entry, list[tuple[int, int, bytes]]]] = []
        for pending in batch:
            try:
                signed.append(self.chain.append(self._key, pending.type, pending.data, now))
                pending.entry = signed[-1][0]
            except DecodeError as exc:
                pending.error = exc
                self.counters["append_refused"] += 1
        done = [p.key for p in batch if p.key is not None]
        try:
            if signed:
                head = self.chain.sign_head(self._key, now)
                await self.store.writer.write(
                    lambda txn: write_entries(txn, self.dbs, signed, head, done=done))
                self.counters["appended"] += len(signed)
                types = ", ".join(sorted({e.type for e, _ in signed}))
                log.debug("log: appended %d entries (%s); %d in all", len(signed), types,
                          self.chain.length, extra={"event": "log_appended", "reason": types})
            elif done:  # all refused: drop them, or they would come back forever
                await self.store.writer.write(lambda txn: drop_pending(txn, self.dbs, done))
            self._committed = self.chain.length
        except BaseException as exc:
            self.chain = self._load()
            self._stored_pending = True  # what was taken from the store is still there
            for pending in batch:
                if pending.error is None:
                    pending.entry, pending.error = None, exc
            if not isinstance(exc, BzzzError):
                raise
            self.counters["append_failed"] += len(signed)
            log.error("log append of %d entries failed: %s", len(signed), exc)
            return False
        finally:
            for pending in batch:
                if pending.done is not None:
                    pending.done.set()
        self.appended.set()
        self.appended = trio.Event()
        return True

    # --- what is appended as it happens -------------------------------------------------------

    async def follow_members(self, changes: Subscription[MemberEvent]) -> None:
        """Append membership changes from the membership service's feed until cancelled."""
        async for event in changes:
            if isinstance(event, Overflowed):
                self.record("events_missed", {"source": "membership", "missed": event.missed})
                continue
            entry = self._member_entry(event)
            if entry is not None:
                self.record(*entry)

    def store_hook(self, txn: Any, change: StoreChange) -> None:
        """The content store's hook: runs in the store's writer thread, inside the store
        write's own transaction, and queues the entry there (``log_pending``), so a durable
        store write always gets its log entry, even across a crash. Cheap: one put."""
        version = change.version
        type_ = STORE_TYPES.get(change.kind, "ucxl_" + change.kind)
        data = {"address": version.address, "version": version.version,
                "hash": version.hash, "size": version.size, "media_type": version.media_type}
        self.queue_in(txn, type_, data)

    def queue_in(self, txn: Any, type: str, data: Mapping[str, Any]) -> None:
        """Queue an entry inside the caller's store write transaction (``log_pending``): it is
        durable exactly when that write is, and the appender signs it in a later batch. For
        write functions of the store's writer only (``Store.writer``: they run one at a time,
        under its commit lock, which is what orders the sequence numbers); once the write has
        committed, ``wake`` the appender (from trio).

        Data with no canonical form is queued as ``events_missed``: it must not fail the
        caller's write, whose state it records."""
        try:
            packed = canonical_pack([type, data])
        except DecodeError as exc:
            log.warning("log: a %s entry has no canonical form (%s): logged as missed", type,
                        exc)
            packed = canonical_pack(["events_missed", {"source": type, "missed": 1}])
        self._sequence += 1  # only write functions touch it, one at a time
        put_pending(txn, self.dbs, self._sequence, packed)

    def wake(self) -> None:
        """Tell the appender entries were queued in the store (``queue_in``); from trio."""
        self._stored_pending = True
        self._wakeup.set()

    async def follow_store(self, changes: Subscription[StoreChange]) -> None:
        """Wake the appender when the store wrote (the entries are already queued in it)."""
        async for _ in changes:
            self.wake()

    def _member_entry(self, event: MemberEvent) -> tuple[str, dict[str, Any]] | None:
        """The entry for a membership change, or None for one not worth logging (a rumour, a
        suspicion, news about a member already logged as present)."""
        if not event.verified or event.node == self.author:
            return None
        data: dict[str, Any] = {"node": event.node, "incarnation": event.incarnation,
                                "address": f"{event.address.host}:{event.address.port}"}
        if event.new_status in (Status.ALIVE, Status.SUSPECT):
            if event.node in self._present or len(self._present) >= MAX_PRESENT:
                return None
            self._present.add(event.node)
            return MEMBER_JOINED, data
        self._present.discard(event.node)
        return MEMBER_LEFT, {**data, "status": event.new_status.name.lower()}

    # --- serving peers (RPC) ------------------------------------------------------------------

    async def rpc_head(self, peer: bytes, body: bytes) -> bytes:
        length = _field(body, "length", optional=True)
        return self.head_at(length).encoded

    async def rpc_entries(self, peer: bytes, body: bytes) -> bytes:
        start = _field(body, "start")
        limit = min(_field(body, "limit"), SERVE_ENTRIES)
        with self.reader() as reader:
            found = reader.batch(self.author, start, max(limit, 1), SERVE_BYTES)
        self.counters["served_entries"] += len(found)
        packed: bytes = msgpack.packb(found, use_bin_type=True)
        return packed


def _field(body: bytes, name: str, *, optional: bool = False) -> Any:
    """A non-negative integer field of an RPC request (None allowed when ``optional``).

    Raises:
        BzzzError: a malformed request (answered with an error, never fatal).
    """
    try:
        request = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception:
        raise BzzzError("log request is not msgpack") from None
    value = request.get(name) if isinstance(request, dict) else "?"
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise BzzzError(f"log request field {name!r} is not a non-negative integer")
    return value
