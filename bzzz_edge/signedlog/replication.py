"""Replicating peers' logs over RPC: fetch, check every entry, store, catch forks. Uses trio.

Each connected peer's own log is fetched from that peer (its node ID is proven by the
connection's handshake, so the log's author is the one answering): when it connects, when it
says it appended (``log.notify``), and every ``SYNC_INTERVAL`` seconds. A node tells its peers
of an append at once when it has been quiet, then at most once every ``NOTIFY_GAP`` seconds:
each notice costs every peer a round (requests, signature checks, a durable commit), and a
busy coordination round appends on several nodes, so telling each append would cost the whole
network more than the round itself. One round with a peer:

1. ask for its head; if we hold some of its log, ask for its signed head at our length too,
   and compare its root with ours: a different root means the author signed two histories,
   so we look for the first index where they part (a binary search over signed heads,
   ``_locate``), keep both entries (or both heads) as evidence, mark the log corrupt and say
   so at error level. Nothing more of that log is replicated;
2. fetch the entries after ours, at most ``ROUND_ENTRIES`` and ``ROUND_BYTES`` a round, in
   requests of at most ``SERVE_ENTRIES``; check each (signature, index, author, previous
   hash) before keeping it; one bad entry refuses the whole round, strikes the peer and stores
   nothing;
3. check the head at the length reached (asked for if the round stops short) against the
   root of the entries, then store entries and head in one commit.

Checking lets the node's other tasks run between every ``CHECK_CHUNK`` entries: a peer's batch
(tens of milliseconds of signature checks) never holds up a coordination round's messages for
longer than a chunk.

Bounds: one round at a time over all peers (so at most one request in flight from us and
``ROUND_BYTES`` held), peers waiting for a round at most the connections we have, at most
``MAX_LOGS`` logs replicated, and a peer is asked at most once every ``MIN_ROUND_GAP`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import msgpack
import trio

from ..errors import BzzzError, DecodeError, SignatureError
from ..feed import Overflowed
from ..ids import short_id
from ..net import ConnectionClosed, ConnectionManager, PeerConnected, PeerDisconnected
from ._chain import BadEntry, Fork, LogChain
from ._codec import Entry, SignedHead, decode_head
from .service import SERVE_ENTRIES, LogService
from .storage import write_entries, write_fork

__all__ = ["MAX_LOGS", "NOTIFY_GAP", "ROUND_BYTES", "ROUND_ENTRIES", "SYNC_INTERVAL",
           "Replicator"]

log = logging.getLogger(__name__)

SYNC_INTERVAL = 30.0
NOTIFY_GAP = 5.0
MIN_ROUND_GAP = 0.2
# Entries checked between two scheduler turns: about 80 us each, so what else is ready waits
# about a millisecond behind a peer's batch, not the whole batch (256 entries: ~20 ms).
CHECK_CHUNK = 16
ROUND_ENTRIES = 4096
ROUND_BYTES = 8 * 2**20
MAX_LOGS = 1024
_TIMEOUT = 10.0


class _Refused(BzzzError):
    """The peer served something that fails a check: nothing of this round is kept."""


class Replicator:
    """Keeps copies of connected peers' logs (see the module docstring)."""

    def __init__(self, service: LogService, manager: ConnectionManager, *,
                 notify_gap: float = NOTIFY_GAP) -> None:
        self._service = service
        self._manager = manager
        self._notify_gap = notify_gap
        self._wanted: dict[bytes, None] = {}  # peers waiting for a round, in order
        self._last_round: dict[bytes, float] = {}
        self._wakeup = trio.Event()
        self.counters: Counter[str] = Counter()
        self.rounds_done = trio.Event()  # set (and replaced) after every round (for tests)
        self._events = manager.events.subscribe()
        manager.on_rpc("log.head", service.rpc_head)
        manager.on_rpc("log.entries", service.rpc_entries)
        manager.on_rpc("log.notify", self._rpc_notify, inline=True)

    def want(self, peer: bytes) -> None:
        if peer in self._manager.connections:
            self._wanted[peer] = None
            self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_peers)
            nursery.start_soon(self._notify_peers)
            nursery.start_soon(self._periodic)
            task_status.started()
            await self._rounds()

    async def _follow_peers(self) -> None:
        for peer in self._manager.connections:
            self.want(peer)
        async for event in self._events:
            if isinstance(event, Overflowed):
                for peer in self._manager.connections:
                    self.want(peer)
            elif isinstance(event, PeerConnected):
                self.want(event.peer_id)
            elif isinstance(event, PeerDisconnected):
                self._wanted.pop(event.peer_id, None)
                self._last_round.pop(event.peer_id, None)

    async def _periodic(self) -> None:
        while True:
            await trio.sleep(SYNC_INTERVAL)
            for peer in self._manager.connections:
                self.want(peer)

    async def _notify_peers(self) -> None:
        """Tell connected peers our length after appends (coalesced: at most one round of
        notices every ``notify_gap``; appends meanwhile are told in the next)."""
        told = self._service.length
        while True:
            if self._service.length == told:
                await self._service.appended.wait()
            told = self._service.length
            body = msgpack.packb({"length": told})
            async with trio.open_nursery() as nursery:
                for peer in self._manager.connections:
                    nursery.start_soon(self._notify_one, peer, body)
            await trio.sleep(self._notify_gap)

    async def _notify_one(self, peer: bytes, body: bytes) -> None:
        try:
            await self._manager.request(peer, "log.notify", body, timeout=_TIMEOUT)
        except BzzzError:
            self.counters["notify_failed"] += 1

    async def _rpc_notify(self, peer: bytes, body: bytes) -> bytes:
        self.want(peer)
        return b""

    async def _rounds(self) -> None:
        while True:
            if not self._wanted:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            peer = next(iter(self._wanted))
            del self._wanted[peer]
            gap = self._last_round.get(peer, -1e9) + MIN_ROUND_GAP - trio.current_time()
            if gap > 0:
                await trio.sleep(gap)
            self._last_round[peer] = trio.current_time()
            try:
                if await self.sync(peer):
                    self._wanted[peer] = None  # more to fetch: another round later
            except ConnectionClosed:
                self.counters["rounds_lost"] += 1
            except _Refused as exc:
                self.counters["rounds_refused"] += 1
                log.warning("refused the log of peer %s: %s", short_id(peer), exc,
                            extra={"event": "log_refused", "peer": short_id(peer),
                                   "reason": str(exc)})
                self._manager.strike(peer, f"bad signed log: {exc}")
            except BzzzError as exc:
                self.counters["rounds_failed"] += 1
                log.debug("log round with %s failed: %s", short_id(peer), exc)
            self.rounds_done.set()
            self.rounds_done = trio.Event()

    # --- one round ----------------------------------------------------------------------------

    async def _head(self, peer: bytes, length: int | None) -> SignedHead:
        raw = await self._manager.request(peer, "log.head", msgpack.packb({"length": length}),
                                          timeout=_TIMEOUT)
        try:
            head = decode_head(raw)
        except (DecodeError, SignatureError) as exc:
            raise _Refused(f"its head: {exc}") from None
        if head.author != peer:
            raise _Refused("it sent another author's head")
        if length is not None and head.length != length:
            raise _Refused(f"asked for its head at {length}, got {head.length}")
        return head

    async def sync(self, peer: bytes) -> bool:
        """One round with ``peer``; True if its log has more for a later round.

        Raises:
            _Refused: the peer served a bad entry or head (nothing was stored).
            BzzzError: the peer did not answer (nothing was stored).
        """
        with self._service.reader() as reader:
            if reader.forks(peer):
                return False  # corrupt: kept as evidence, not extended
            ours = reader.head(peer)
            if ours is None and len(reader.authors()) >= MAX_LOGS:
                self.counters["too_many_logs"] += 1
                return False
            chain = reader.chain(peer)
        theirs = await self._head(peer, None)
        have = 0 if ours is None else ours.length
        if ours is not None and await self._forked(peer, ours, theirs):
            return False
        if theirs.length <= have:
            return False
        chain = chain or LogChain(peer, theirs.public_key)
        if chain.public_key != theirs.public_key:
            raise _Refused("its head names another key for the same node ID")
        fetched = await self._fetch(peer, chain, theirs.length)
        head = theirs if chain.length == theirs.length else await self._head(peer, chain.length)
        try:
            chain.check_head(head)
        except BadEntry:
            await self._keep_fork(Fork(peer, chain.length - 1, "head", fetched[-1][0].encoded,
                                       head.encoded))
            return False
        await self._service.store.writer.write(
            lambda txn: write_entries(txn, self._service.dbs, fetched, head))
        self.counters["entries_replicated"] += len(fetched)
        log.debug("replicated %d entries of the log of %s (now %d of %d)", len(fetched),
                  short_id(peer), chain.length, theirs.length,
                  extra={"event": "log_replicated", "peer": short_id(peer)})
        return chain.length < theirs.length

    async def _fetch(self, peer: bytes, chain: LogChain,
                     end: int) -> list[tuple[Entry, list[tuple[int, int, bytes]]]]:
        """Fetch and check entries from ``chain.length`` towards ``end``, within a round's
        bounds (at least one entry)."""
        out: list[tuple[Entry, list[tuple[int, int, bytes]]]] = []
        size = 0
        target = min(end, chain.length + ROUND_ENTRIES)
        while chain.length < target and size < ROUND_BYTES:
            want = min(SERVE_ENTRIES, target - chain.length)
            raw = await self._manager.request(
                peer, "log.entries", msgpack.packb({"start": chain.length, "limit": want}),
                timeout=_TIMEOUT)
            batch = _entry_list(raw)
            if not batch or len(batch) > want:
                raise _Refused(f"asked for {want} entries from {chain.length}, "
                               f"got {len(batch)}")
            for number, encoded in enumerate(batch):
                if number and number % CHECK_CHUNK == 0:
                    await trio.lowlevel.checkpoint()
                try:
                    out.append((entry := chain.check_next(encoded), chain.accept(entry)))
                except BadEntry as exc:
                    raise _Refused(str(exc)) from None
                size += len(encoded)
        return out

    async def _forked(self, peer: bytes, ours: SignedHead, theirs: SignedHead) -> bool:
        """Whether the peer's signed history disowns what we hold (then the evidence is kept)."""
        if theirs.length < ours.length:
            with self._service.reader() as reader:
                root = reader.root(peer, theirs.length)
            if root == theirs.root:
                return False  # it lost entries it once had (a restored backup?): not a fork
            at = theirs
        else:
            at = theirs if theirs.length == ours.length else await self._head(peer, ours.length)
            if at.root == ours.root:
                return False
        await self._keep_fork(await self._locate(peer, at.length) or
                              Fork(peer, at.length - 1, "head", ours.encoded, at.encoded))
        return True

    async def _locate(self, peer: bytes, length: int) -> Fork | None:
        """The first index where the peer's log and ours differ, as two signed entries.

        A binary search over its signed heads at lengths up to ``length`` (about log2 of it
        requests), then its entry at that index.
        """
        lo, hi = 0, length  # prefixes of length lo agree; of length hi differ
        while hi - lo > 1:
            mid = (lo + hi) // 2
            theirs = await self._head(peer, mid)
            with self._service.reader() as reader:
                same = reader.root(peer, mid) == theirs.root
            lo, hi = (mid, hi) if same else (lo, mid)
        raw = _entry_list(await self._manager.request(
            peer, "log.entries", msgpack.packb({"start": hi - 1, "limit": 1}),
            timeout=_TIMEOUT))
        with self._service.reader() as reader:
            chain = reader.chain(peer)
            ours = reader.entry(peer, hi - 1)
        if not raw or ours is None or chain is None:
            return None
        try:
            other = chain.check_signed(raw[0])
        except BadEntry:
            return None
        if other.index != hi - 1 or other.encoded == ours:
            return None
        return Fork(peer, hi - 1, "entry", ours, other.encoded)

    async def _keep_fork(self, fork: Fork) -> None:
        log.error("FORK: node %s signed two different %ss for index %d of its log; its log is "
                  "marked corrupt here and the evidence kept", short_id(fork.author),
                  fork.kind, fork.index)
        self.counters["forks"] += 1
        now = int(time.time() * 1000)
        await self._service.store.writer.write(
            lambda txn: write_fork(txn, self._service.dbs, fork, now))


def _entry_list(raw: bytes) -> list[bytes]:
    try:
        value: Any = msgpack.unpackb(raw, raw=False)
    except Exception:
        raise _Refused("its entries are not msgpack") from None
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise _Refused("its entries are not a list of byte strings")
    return value
