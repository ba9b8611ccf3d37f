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
  this node's own records are kept there too, and republished at start.
- Timers: one ticker task sleeps until the core's ``next_deadline`` (or until something new
  happened) and ticks it: RPC timeouts, lookup deadlines, expiry, republishing,
  re-replication and bucket refresh all come from there.

Application calls (``find``, ``get``, ``put``, ``publish``) wait for the core's answer, at
most ``lookup_deadline`` plus two RPC timeouts. Bounds are the core's (RPCs and operations in
flight, records, per-peer rates); each RPC we send is one task, at most ``max_pending_rpcs``.
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

from ..errors import BzzzError, DecodeError
from ..feed import Overflowed
from ..identity import Identity
from ..ids import short_id
from ..membership import Status
from ..net import ConnectionClosed, ConnectionManager, PeerConnected, RequestFailed, Source
from ..store import Store
from ._config import DhtConfig
from ._contact import Contact, bucket_index
from ._events import (
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
from ._record import Kind, Record, sign_record, verify_record
from .storage import RecordRows

__all__ = ["RPC_METHOD", "DhtService"]

log = logging.getLogger(__name__)

RPC_METHOD = "dht"
_RECENT = 32  # application lookups remembered for the health check
_Done = LookupDone | GetDone | PutDone


class _Waiter:
    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: _Done | None = None


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
        self._identity = identity
        self.node_id = identity.node_id
        self._public_key = identity.private_key.public_key().public_bytes_raw()
        self._network_id = network_id
        self.config = config
        self.max_value_bytes = max_value_bytes
        self._host = host or "127.0.0.1"
        self.rows = RecordRows(store)
        self.core: DhtNode | None = None
        self._waiting: dict[Hashable, _Waiter] = {}
        self._ops = itertools.count()
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._addresses: dict[bytes, Contact] = {}
        self._versions: dict[tuple[Kind, bytes, bytes], int] = {}
        self.recent: deque[bool] = deque(maxlen=_RECENT)
        self.counters: Counter[str] = Counter()
        self.started = trio.Event()
        self._changes = membership.changes.subscribe()
        self._peer_events = manager.events.subscribe()
        self._dialling: dict[bytes, trio.Event] = {}
        manager.on_rpc(RPC_METHOD, self._serve, inline=True)

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        now = trio.current_time()
        contact = Contact(self.node_id, self._host, self._manager.port)
        self.core = DhtNode(contact, network_id=self._network_id, now=now, config=self.config)
        own = self._load(now)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.rows.run)
            self._seed()
            for record in own:
                self._perform(self.core.handle(PutRecord(("republish", record.slot), record),
                                               trio.current_time()))
            nursery.start_soon(self._follow_members)
            nursery.start_soon(self._follow_connections)
            self.started.set()
            task_status.started()
            await self._tick_loop()

    def _load(self, now: float) -> list[Record]:
        """Records kept from the last run into the core; our own ones, to republish."""
        assert self.core is not None
        own = []
        for record in self.rows.load():
            try:
                verify_record(record, self._network_id)
            except BzzzError:
                self.counters["rows_refused"] += 1
                continue
            if record.publisher_key == self._public_key:
                own.append(record)
                self._versions[record.slot] = max(record.version,
                                                  self._versions.get(record.slot, 0))
            else:
                self.core.store.put(record, now, lambda _: True)
        if own or len(self.core.store):
            log.info("DHT: %d records held, %d of our own, from the last run",
                     len(self.core.store), len(own))
        return own

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
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._wakeup.wait()
            self._perform(self.core.tick(trio.current_time()))
            # Replaced after the tick: its own actions must not wake it again at once.
            self._wakeup = trio.Event()

    # --- performing the core's actions --------------------------------------------------------

    def _perform(self, actions: Iterable[Action]) -> None:
        assert self.core is not None
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            if isinstance(action, Send):
                queue.extend(self._send(action))
            elif isinstance(action, CheckLiveness):
                node = action.contact.node
                queue.extend(self.core.handle(LivenessResult(node, self._alive(node)),
                                              trio.current_time()))
            elif isinstance(action, RecordStored):
                self.rows.put(action.record)
            elif isinstance(action, RecordExpired):
                if action.record.publisher_key != self._public_key:
                    self.rows.drop(action.record)
            else:
                waiter = self._waiting.pop(action.op, None)
                if waiter is not None:
                    waiter.result = action
                    waiter.done.set()
        self._wakeup.set()

    def _send(self, action: Send) -> list[Action]:
        assert self.core is not None
        message = action.message
        if not isinstance(message, FindNode | FindValue | StoreMessage):
            self.counters["replies_unsent"] += 1  # replies go back as RPC answers
            return []
        node = action.to.node
        if self._nursery is None:
            return self.core.handle(SendFailed(node, message.rpc), trio.current_time())
        self._nursery.start_soon(self._call, action.to, message)
        return []

    async def _connected(self, to: Contact) -> bool:
        """Whether a connection to ``to`` is up, dialled (and waited for up to one RPC
        timeout) if need be. Members are dialled as members; contacts only other nodes named,
        as rumours (few at a time), so a peer handing out addresses gets little dialling."""
        if to.node in self._manager.connections:
            return True
        if to.port == 0:
            return False
        known = self._addresses.get(to.node) == to
        self._manager.want((to.host, to.port), Source.MEMBERSHIP if known else Source.RUMOUR,
                           to.node)
        self.counters["dials"] += 1
        if len(self._dialling) > 1024:  # dials that never connected: their waiters time out
            self._dialling.clear()
        event = self._dialling.setdefault(to.node, trio.Event())
        with trio.move_on_after(self.config.rpc_timeout):
            await event.wait()
        return to.node in self._manager.connections

    async def _follow_connections(self) -> None:
        async for event in self._peer_events:
            if isinstance(event, PeerConnected):
                waiting = self._dialling.pop(event.peer_id, None)
                if waiting is not None:
                    waiting.set()

    async def _call(self, to: Contact, message: FindNode | FindValue | StoreMessage) -> None:
        assert self.core is not None
        if not await self._connected(to):
            self.counters["not_connected"] += 1
            self._perform(self.core.handle(SendFailed(to.node, message.rpc),
                                           trio.current_time()))
            return
        try:
            answer = await self._manager.request(to.node, RPC_METHOD, _pack(message),
                                                 timeout=self.config.rpc_timeout)
            payload = msgpack.unpackb(answer, raw=False, strict_map_key=True)
        except (ConnectionClosed, RequestFailed, ValueError, msgpack.UnpackException) as exc:
            self.counters["rpc_failed"] += 1
            log.debug("DHT RPC to %s failed: %s", short_id(to.node), exc)
            self._perform(self.core.handle(SendFailed(to.node, message.rpc),
                                           trio.current_time()))
            return
        self._perform(self.core.handle(Received(to, payload), trio.current_time()))

    def _alive(self, node: bytes) -> bool:
        core = self._membership.core
        if core is None:
            return node in self._manager.connections
        return any(m.node == node for m in core.alive_members())

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
        if not isinstance(message, FindNode | FindValue | StoreMessage):
            self.counters["malformed"] += 1
            raise BzzzError("a DHT request is FIND_NODE, FIND_VALUE or STORE")
        if isinstance(message, StoreMessage) and len(message.record.value) > self.max_value_bytes:
            self.counters["store_too_large"] += 1
            return _pack(Stored(message.rpc, Verdict.INVALID))
        actions = core.handle(Received(self._contact_of(peer), message), trio.current_time())
        reply: Message | None = None
        rest: list[Action] = []
        for action in actions:
            if (reply is None and isinstance(action, Send) and action.to.node == peer
                    and isinstance(action.message, Nodes | Values | Stored)
                    and action.message.rpc == message.rpc):
                reply = action.message
            else:
                rest.append(action)
        self._perform(rest)
        if reply is None:
            raise BzzzError("too many DHT requests: rate limited")
        return _pack(reply)

    def _contact_of(self, peer: bytes) -> Contact:
        known = self._addresses.get(peer)
        if known is not None:
            return known
        conn = self._manager.connections.get(peer)
        port = conn.hello.get("port") if conn is not None else None
        if conn is not None and isinstance(port, int) and 0 <= port <= 65535:
            return Contact(peer, conn.remote_ip, port)
        return Contact(peer, "0.0.0.0", 0)  # never dialled by address: the transport uses IDs

    # --- what the node and the API ask -----------------------------------------------------

    async def _ask(self, make: Callable[[Hashable], Event]) -> _Done:
        if self.core is None:
            raise BzzzError("the DHT is not running")
        op = ("app", next(self._ops))
        waiter = self._waiting[op] = _Waiter()
        try:
            self._perform(self.core.handle(make(op), trio.current_time()))
            with trio.move_on_after(self.config.lookup_deadline + 2 * self.config.rpc_timeout
                                    + 1.0):
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

    async def get(self, key: bytes, kind: Kind = Kind.VALUE) -> GetDone:
        """The valid records of ``kind`` under ``key``, newest first."""
        done = await self._ask(lambda op: GetRecords(op, key, kind))
        assert isinstance(done, GetDone)
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
        now_ms = int(time.time() * 1000)
        slot = (kind, key, self._public_key)
        version = max(now_ms, self._versions.get(slot, 0) + 1)
        self._versions[slot] = version
        return sign_record(self._identity.private_key, network_id=self._network_id, kind=kind,
                           key=key, version=version, timestamp_ms=now_ms, address=address,
                           value=value, content_hash=content_hash)

    async def request(self, node: bytes, method: str, body: bytes, *, timeout: float) -> bytes:
        """An RPC to ``node``, dialled first if it is a member we are not connected to.

        Raises:
            ConnectionClosed, RequestFailed: as ``ConnectionManager.request``.
        """
        contact = self._addresses.get(node)
        if contact is not None:
            await self._connected(contact)
        return await self._manager.request(node, method, body, timeout=timeout)

    def members(self) -> list[bytes]:
        """The live members this node knows (membership's view, as the DHT follows it)."""
        return list(self._addresses)

    def contact(self, node: bytes) -> Contact | None:
        if node == self.node_id and self.core is not None:
            return self.core.contact
        return self._addresses.get(node)

    # --- views ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        core = self.core
        if core is None:
            return {"running": False}
        recent = list(self.recent)
        return {
            "running": True,
            "node_id": self.node_id.hex(),
            "routing_table": len(core.table),
            "deepest_bucket": core.table.deepest_bucket(),
            "records_held": len(core.store),
            "own_records": len(core.own_records()),
            "pending_rpcs": core.pending_rpcs,
            "operations": core.operations,
            "recent_lookups": len(recent),
            "recent_successes": sum(recent),
            "counters": dict(core.counters + self.counters + self.rows.counters),
            "k": self.config.k,
            "alpha": self.config.alpha,
        }

    def routes(self) -> list[dict[str, Any]]:
        if self.core is None:
            return []
        return sorted(({"node": c.node.hex(), "host": c.host, "port": c.port,
                        "bucket": bucket_index(self.node_id, c.node)}
                       for c in self.core.table.contacts()),
                      key=lambda r: (-int(r["bucket"]), str(r["node"])))
