"""The DHT service: the Kademlia core run over the transport's RPC. Uses trio.

The shell around ``DhtNode`` (sans-IO): it feeds the core what happens and performs what it
asks, and nothing else.

- Wire: one RPC method, ``dht``, carries the core's messages (msgpack of ``encode_message``).
  A request the core sends is a transport RPC to the contact's node ID whose answer is the
  core's reply message; a failed or unanswered RPC goes back in as ``SendFailed`` (the core
  keeps its own timeouts too). Peers' requests are served inline (the core never waits): the
  reply the core produces for that request is the RPC's answer; a request the core refuses
  (rate limit) is an error answer. A STORE whose value exceeds ``max_value_bytes`` is
  answered ``INVALID`` before the core sees it.
- Membership: the routing table is seeded with every alive member at start (a LAN node never
  starts cold), then this node looks itself up; a member that becomes alive is
  ``Discovered``, one that dies or leaves ``Departed`` (which re-replicates what it held).
  Liveness checks the core asks for are answered from membership's view at once.
- Records the core stores or drops are written through ``RecordRows`` (LMDB, group commit);
  this node's own records are kept there too, and republished at start (``_own``: signing
  them, finding them at start).
- Peers: dialled on demand before an RPC, as members or as rumours (``_reach``).
- Timers: one ticker task sleeps until the core's ``next_deadline`` (moved, not woken, when
  what happened moved that deadline) and ticks it: RPC timeouts, lookup deadlines, the
  hedge, expiry, republishing, re-replication and bucket refresh all come from there.

Application calls (``find``, ``get``, ``put``, ``publish``) wait for the core's answer, at
most ``lookup_deadline`` plus two RPC timeouts. Bounds are the core's (RPCs and operations in
flight, records, per-peer rates); each RPC we send is one task, at most ``max_pending_rpcs``,
but for an application call's first, which its caller makes itself (no task to start, no
wake-up to hand the answer over: a get that its nearest node answers needs nothing else).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import msgpack
import trio
from trio.lowlevel import current_task

from ..errors import BzzzError, DecodeError
from ..feed import Overflowed
from ..identity import Identity
from ..ids import short_id
from ..membership import Status
from ..net import ConnectionClosed, ConnectionManager, RequestFailed
from ..store import Store
from . import _views
from ._config import DhtConfig
from ._contact import Contact
from ._events import (
    Abandoned,
    Action,
    CheckLiveness,
    Departed,
    Discovered,
    Event,
    FindNodes,
    GetDone,
    GetRecords,
    LivenessResult,
    LookupDone,
    PutDone,
    PutRecord,
    Received,
    RecordExpired,
    RecordStored,
    Send,
    SendFailed,
)
from ._messages import (
    FindNode,
    FindValue,
    Message,
    Nodes,
    Stored,
    Values,
    Verdict,
    decode_message,
    encode_message,
)
from ._messages import Store as StoreMessage
from ._node import DhtNode
from ._own import OwnRecords
from ._reach import Reach
from ._record import Kind, Record
from .storage import RecordRows

__all__ = ["RPC_METHOD", "DhtService"]

log = logging.getLogger(__name__)

RPC_METHOD = "dht"
_RECENT = 32  # application lookups remembered for the health check
_TIMED = 1024  # application gets whose duration the status shows
_Done = LookupDone | GetDone | PutDone
_Request = tuple[Contact, FindNode | FindValue | StoreMessage]
_REQUESTS = (FindNode, FindValue, StoreMessage)  # (a tuple: no union built per isinstance)
_REPLIES = (Nodes, Values, Stored)


class _Waiter:
    __slots__ = ("done", "result", "scope", "task")

    def __init__(self) -> None:
        self.done: trio.Event | None = None  # made when the caller has to wait
        self.result: _Done | None = None
        self.scope: trio.CancelScope | None = None  # the caller's own RPC, while it runs
        self.task = current_task()


def _pack(message: Message) -> bytes:
    packed: bytes = msgpack.packb(encode_message(message), use_bin_type=True)
    return packed


class DhtService:
    """Runs this node's DHT (see the module docstring).

    Args:
        manager: the transport; the ``dht`` RPC method is registered at once.
        membership: seeds the routing table and reports deaths (``core`` and ``changes``).
        store: where records are kept (opened with ``storage.DATABASES``).
        identity: signs this node's records.
        network_id: signed into every record.
        config: the core's tunables.
        max_value_bytes: largest value a STORE may carry.
        host: the address peers should reach us at (shown in contacts).
    """

    def __init__(self, manager: ConnectionManager, membership: Any, store: Store,
                 identity: Identity, *, network_id: bytes, config: DhtConfig,
                 max_value_bytes: int, host: str = "127.0.0.1") -> None:
        self._manager = manager
        self._membership = membership
        self.node_id = identity.node_id
        self._own = OwnRecords(identity, network_id)
        self._network_id = network_id
        self.config = config
        self.max_value_bytes = max_value_bytes
        self._host = host or "127.0.0.1"
        self.rows = RecordRows(store)
        self.core: DhtNode | None = None
        self._waiting: dict[Hashable, _Waiter] = {}
        self._ops = itertools.count()
        self._ticker: trio.CancelScope | None = None  # the ticker's sleep, while it sleeps
        self._nursery: trio.Nursery | None = None
        self.recent: deque[bool] = deque(maxlen=_RECENT)
        self.get_ms: deque[float] = deque(maxlen=_TIMED)  # the last gets' durations
        self.counters: Counter[str] = Counter()
        self._reach = Reach(manager, membership, self.counters, rpc_timeout=config.rpc_timeout)
        self._addresses = self._reach.addresses
        self.started = trio.Event()
        self._changes = membership.changes.subscribe()
        manager.on_rpc(RPC_METHOD, self._serve, inline=True)

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        now = trio.current_time()
        contact = Contact(self.node_id, self._host, self._manager.port)
        self.core = DhtNode(contact, network_id=self._network_id, now=now, config=self.config)
        own = self._own.load(self.rows, self.core.store, now, self.counters)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.rows.run)
                self._seed()
                for record in own:
                    self._perform(self.core.handle(PutRecord(("republish", record.slot),
                                                             record), trio.current_time()))
                nursery.start_soon(self._follow_members)
                nursery.start_soon(self._reach.follow_connections)
                self.started.set()
                task_status.started()
                await self._tick_loop()
        finally:
            self._nursery = None  # a caller still asking gets its RPCs failed, not a crash

    def _seed(self) -> None:
        """Every live member into the table, then a lookup of our own ID."""
        core = self._membership.core
        now = trio.current_time()
        assert self.core is not None
        if core is not None:
            for member in core.alive_members():
                if member.node != self.node_id:
                    self._learn(member.node, member.address.host, member.address.port, now)
        self._perform(self.core.handle(FindNodes(("join", next(self._ops)), self.node_id), now))

    def discover(self, node: bytes, host: str, port: int) -> None:
        """Add a node known some other way (a static peer; benchmarks without membership)."""
        self._learn(node, host, port, trio.current_time())

    def _learn(self, node: bytes, host: str, port: int, now: float) -> None:
        assert self.core is not None
        try:
            contact = Contact(node, host, port)
        except BzzzError:
            return
        self._addresses[node] = contact
        self._perform(self.core.handle(Discovered(contact), now))

    async def _follow_members(self) -> None:
        assert self.core is not None
        async for event in self._changes:
            now = trio.current_time()
            if isinstance(event, Overflowed):
                self._seed()
            elif event.node == self.node_id:
                continue
            elif event.new_status in (Status.ALIVE, Status.SUSPECT):
                self._learn(event.node, event.address.host, event.address.port, now)
            else:
                self._addresses.pop(event.node, None)
                self._perform(self.core.handle(Departed(event.node), now))

    async def _tick_loop(self) -> None:
        assert self.core is not None
        while True:
            deadline = self.core.next_deadline()
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as sleep:
                self._ticker = sleep
                await trio.sleep_forever()
            self._ticker = None
            self._perform(self.core.tick(trio.current_time()))

    # --- performing the core's actions --------------------------------------------------------

    def _perform(self, actions: Iterable[Action], first: list[_Request] | None = None) -> None:
        """Do what the core asks; ``first``: the first request is put there, for the caller
        to make itself, rather than started as a task."""
        assert self.core is not None
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            if isinstance(action, Send):
                message = action.message
                if first is not None and not first and isinstance(message, _REQUESTS):
                    first.append((action.to, message))
                    continue
                queue.extend(self._send(action))
            elif isinstance(action, CheckLiveness):
                node = action.contact.node
                queue.extend(self.core.handle(LivenessResult(node, self._reach.alive(node)),
                                              trio.current_time()))
            elif isinstance(action, RecordStored):
                self.rows.put(action.record)
            elif isinstance(action, RecordExpired):
                if action.record.publisher_key != self._own.public_key:
                    self.rows.drop(action.record)
            else:
                waiter = self._waiting.pop(action.op, None)
                if waiter is not None:
                    waiter.result = action
                    if waiter.done is not None:
                        waiter.done.set()
                    if waiter.scope is not None and waiter.task is not current_task():
                        waiter.scope.cancel()  # its own RPC, waited on elsewhere: abandoned
        # The ticker sleeps until the core's next deadline: moved, never woken to move it (a
        # get's hedge deadline comes and goes with the get, and costs no task step).
        sleep = self._ticker
        if sleep is not None:
            deadline = self.core.next_deadline()
            deadline = math.inf if deadline is None else deadline
            if deadline != sleep.deadline:
                sleep.deadline = deadline

    def _send(self, action: Send) -> list[Action]:
        assert self.core is not None
        message = action.message
        if not isinstance(message, _REQUESTS):
            self.counters["replies_unsent"] += 1  # replies go back as RPC answers
            return []
        node = action.to.node
        if self._nursery is None:
            return self.core.handle(SendFailed(node, message.rpc), trio.current_time())
        self._nursery.start_soon(self._call, action.to, message)
        return []

    async def _call(self, to: Contact, message: FindNode | FindValue | StoreMessage) -> None:
        """One RPC of the core's, its outcome fed back. Cancelled (its operation ended while
        its caller waited on it, or the caller went away), it is ``Abandoned``: the peer is
        not blamed for an answer nobody waited for."""
        assert self.core is not None
        try:
            if to.node not in self._manager.connections and not await self._reach.connected(to):
                self.counters["not_connected"] += 1
                self._perform(self.core.handle(SendFailed(to.node, message.rpc),
                                               trio.current_time()))
                return
            answer = await self._manager.request(to.node, RPC_METHOD, _pack(message),
                                                 timeout=self.config.rpc_timeout)
            payload = msgpack.unpackb(answer, raw=False, strict_map_key=True)
        except (ConnectionClosed, RequestFailed, ValueError, msgpack.UnpackException) as exc:
            self.counters["rpc_failed"] += 1
            log.debug("DHT RPC to %s failed: %s", short_id(to.node), exc)
            self._perform(self.core.handle(SendFailed(to.node, message.rpc),
                                           trio.current_time()))
            return
        except trio.Cancelled:
            self._perform(self.core.handle(Abandoned(to.node, message.rpc),
                                           trio.current_time()))
            raise
        self._perform(self.core.handle(Received(to, payload), trio.current_time()))

    # --- serving peers ------------------------------------------------------------------------

    async def _serve(self, peer: bytes, body: bytes) -> bytes:
        core = self.core
        if core is None:
            raise BzzzError("the DHT is not running yet")
        try:
            message = decode_message(msgpack.unpackb(body, raw=False, strict_map_key=True))
        except (DecodeError, ValueError, msgpack.UnpackException) as exc:
            self.counters["malformed"] += 1
            log.debug("malformed DHT request from %s: %s", short_id(peer), exc)
            raise BzzzError(f"malformed DHT request: {str(exc)[:200]}") from None
        if not isinstance(message, _REQUESTS):
            self.counters["malformed"] += 1
            raise BzzzError("a DHT request is FIND_NODE, FIND_VALUE or STORE")
        if isinstance(message, StoreMessage) and len(message.record.value) > self.max_value_bytes:
            self.counters["store_too_large"] += 1
            return _pack(Stored(message.rpc, Verdict.INVALID))
        actions = core.handle(Received(self._reach.contact_of(peer), message), trio.current_time())
        reply: Message | None = None
        rest: list[Action] = []
        for action in actions:
            if (reply is None and isinstance(action, Send) and action.to.node == peer
                    and isinstance(action.message, _REPLIES)
                    and action.message.rpc == message.rpc):
                reply = action.message
            else:
                rest.append(action)
        if rest:
            self._perform(rest)
        if reply is None:
            raise BzzzError("too many DHT requests: rate limited")
        return _pack(reply)

    # --- what the node and the API ask -----------------------------------------------------

    async def _ask(self, make: Callable[[Hashable], Event]) -> _Done:
        """Start an operation and wait for its end. Its first RPC is made from this task (no
        task started for it, no wake-up to hand over the answer: most gets need no other);
        when the operation ends meanwhile (the hedge's RPCs found it), that RPC is
        abandoned."""
        if self.core is None:
            raise BzzzError("the DHT is not running")
        op = ("app", next(self._ops))
        waiter = self._waiting[op] = _Waiter()
        now = trio.current_time()
        deadline = now + self.config.lookup_deadline + 2 * self.config.rpc_timeout + 1.0
        first: list[_Request] = []
        try:
            self._perform(self.core.handle(make(op), now), first)
            if first:  # (bounded by its own timeouts: dialling and the RPC, well within ours)
                with trio.CancelScope() as waiter.scope:
                    await self._call(*first[0])
                waiter.scope = None
            if waiter.result is None:
                waiter.done = trio.Event()
                with trio.move_on_at(deadline):
                    await waiter.done.wait()
        finally:
            self._waiting.pop(op, None)
        if waiter.result is None:
            raise BzzzError("the DHT did not answer in time")
        return waiter.result

    async def find(self, target: bytes) -> LookupDone:
        """The k nodes closest to ``target``."""
        done = await self._ask(lambda op: FindNodes(op, target))
        assert isinstance(done, LookupDone)
        self.recent.append(done.result.answered > 0)
        return done

    async def get(self, key: bytes, kind: Kind = Kind.VALUE, *,
                  lookup: bool = False) -> GetDone:
        """The valid records of ``kind`` under ``key``, newest first; ``lookup``: asked of the
        network even when this node holds some (``GetRecords.lookup``)."""
        began = time.perf_counter()
        done = await self._ask(lambda op: GetRecords(op, key, kind, lookup))
        assert isinstance(done, GetDone)
        self.get_ms.append((time.perf_counter() - began) * 1000)
        self.counters["gets"] += 1
        self.recent.append(bool(done.records) or done.result.answered > 0)
        return done

    async def put(self, record: Record) -> PutDone:
        """Store our own ``record`` at the k closest nodes (and keep republishing it)."""
        self.rows.put(record)
        done = await self._ask(lambda op: PutRecord(op, record))
        assert isinstance(done, PutDone)
        return done

    def sign(self, kind: Kind, key: bytes, *, address: str | None = None, value: bytes = b"",
             content_hash: bytes | None = None) -> Record:
        """A record of ours, its version above every earlier one in its slot."""
        return self._own.sign(kind, key, address=address, value=value,
                              content_hash=content_hash)

    async def request(self, node: bytes, method: str, body: bytes, *, timeout: float) -> bytes:
        """An RPC to ``node``, dialled first if it is a member we are not connected to.

        Raises:
            ConnectionClosed, RequestFailed: as ``ConnectionManager.request``.
        """
        return await self._reach.request(node, method, body, timeout=timeout)

    def members(self) -> list[bytes]:
        """The live members this node knows (membership's view, as the DHT follows it)."""
        return list(self._addresses)

    def contact(self, node: bytes) -> Contact | None:
        if node == self.node_id and self.core is not None:
            return self.core.contact
        return self._addresses.get(node)

    # --- views ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return _views.status(self.core, node_id=self.node_id, config=self.config,
                             recent=self.recent, counters=self.counters + self.rows.counters,
                             get_ms=self.get_ms)

    def routes(self) -> list[dict[str, Any]]:
        return _views.routes(self.core, self.node_id)
