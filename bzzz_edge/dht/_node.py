"""The Kademlia node core: serves a peer's requests and runs this node's operations. Sans-IO.

``handle(event, now)`` and ``tick(now)`` return actions; ``next_deadline()`` says when ``tick``
is next needed. What it does:

- serves FIND_NODE, FIND_VALUE (and GET_PROVIDERS) and STORE (and ADD_PROVIDER) within each
  peer's request rate (``_serve``); a STORE is checked by the record store's rules before
  its signature, and verified records are remembered so a replica that arrives again costs no
  second check;
- runs lookups, gets and puts (``_operations``) over ``Lookup``: every request is an RPC with an
  ID and a timeout; a timeout or a failed send counts against the peer in the routing table,
  which asks the shell for a liveness check once it looks stale;
- a get checks every record it receives (key, kind, signature) and keeps the highest version
  per publisher; a record that fails is counted, never returned. It ends at the first answer
  that carried a valid record, and asks the nearest node alone first (``Lookup``'s narrow
  start), the nearest of every node the table knows, its replacement candidates included
  (``closest_known``: with k = 4 and 20 nodes, a table's buckets hold only about 12 of the
  19 others, and a get whose first RPC missed the holders cost a second). A get of a key
  this node holds records under (it is one of their k closest nodes) is answered from its
  own store, as a holder would answer it, with no RPC, unless it is a ``lookup`` (``dht
  find``: what the network answers);
- keeps its own records alive (republishes them every ``republish_interval``) and the records
  it holds for others (re-stores them at the k closest every ``replicate_interval``, and soon
  after a node near their key dies, when it is itself one of the two nodes nearest the key it
  knows, so a death does not set off k repairs);
- refreshes buckets no lookup touched for ``refresh_interval``.

Bounds: ``max_pending_rpcs`` RPCs and ``max_operations`` operations at once (an application
request beyond that ends at once with an empty result; internal work waits for the next
round); the record store and routing table bound themselves. A message a peer got wrong is
counted in ``counters`` and logged at DEBUG; it never raises out of ``handle``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import Counter
from collections.abc import Hashable

from bzzz_edge.dht._config import DhtConfig
from bzzz_edge.dht._contact import Contact
from bzzz_edge.dht._events import (
    Abandoned,
    Action,
    Departed,
    Discovered,
    Event,
    FindNodes,
    GetDone,
    GetRecords,
    LivenessResult,
    LookupDone,
    PutDone,
    Received,
    RecordExpired,
    RecordStored,
    Send,
    SendFailed,
)
from bzzz_edge.dht._lookup import Lookup
from bzzz_edge.dht._messages import (
    FindNode,
    FindValue,
    Message,
    Nodes,
    Store,
    Stored,
    Values,
    Verdict,
    decode_message,
)
from bzzz_edge.dht._operations import Operation, OpKind
from bzzz_edge.dht._record import Kind, Record
from bzzz_edge.dht._routing import RoutingTable
from bzzz_edge.dht._serve import Server
from bzzz_edge.dht._store import RecordStore
from bzzz_edge.errors import DecodeError, LocalProtocolError
from bzzz_edge.ids import short_id

__all__ = ["DhtNode"]

_log = logging.getLogger(__name__)

_MESSAGES = (FindNode, FindValue, Store, Nodes, Values, Stored)
_REPLIES = (Nodes, Values, Stored)
_REPAIR_LEADERS = 2


class _Pending:
    __slots__ = ("contact", "op")

    def __init__(self, contact: Contact, op: Hashable) -> None:
        self.contact = contact
        self.op = op


class DhtNode:
    """The DHT core of one node. See the module docstring.

    Args:
        contact: this node's ID and listening address.
        network_id: signed into every record (``identity.network_id``).
        config: tunables; ``DhtConfig()`` when omitted.
        now: the current time on the shell's monotonic clock.
        rng: randomness for refresh targets and RPC IDs; pass a seeded one to reproduce runs.
    """

    def __init__(self, contact: Contact, *, network_id: bytes, now: float,
                 config: DhtConfig | None = None, rng: random.Random | None = None) -> None:
        self.contact = contact
        self.node_id = contact.node
        self.config = config if config is not None else DhtConfig()
        self._rng = rng if rng is not None else random.Random()
        self.table = RoutingTable(self.node_id, self.config, now)
        self.store = RecordStore(self.config)
        self._pending: dict[int, _Pending] = {}
        self._timeouts: list[tuple[float, int]] = []
        self._next_rpc = self._rng.getrandbits(48)
        self._ops: dict[Hashable, Operation] = {}
        self._internal = itertools.count()
        self._own: dict[tuple[Kind, bytes, bytes], Record] = {}
        self._own_key = b""  # our public key, once we published: the publisher of every own slot
        self._republish: list[tuple[float, tuple[Kind, bytes, bytes]]] = []
        self._republish_at: dict[tuple[Kind, bytes, bytes], float] = {}
        self.counters: Counter[str] = Counter()
        self._server = Server(self.config, self.table, self.store, network_id, self.counters)

    # --- the core's surface ---------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, Received):
            return self._on_received(event.sender, event.payload, now)
        if isinstance(event, Discovered):
            self.table.seen(event.contact, now)
            return []
        if isinstance(event, Departed):
            gone = self.table.remove(event.node)
            return self._node_gone(event.node, now) if gone is not None else []
        if isinstance(event, LivenessResult):
            gone = self.table.check_result(event.node, event.alive, now)
            return self._node_gone(event.node, now) if gone is not None else []
        if isinstance(event, SendFailed):
            pending = self._pending.get(event.rpc)
            if pending is None or pending.contact.node != event.node:
                return []
            del self._pending[event.rpc]
            return self._rpc_failed(event.rpc, pending, now)
        if isinstance(event, Abandoned):
            pending = self._pending.get(event.rpc)
            if pending is None or pending.contact.node != event.node:
                return []
            del self._pending[event.rpc]  # (its timeout is skipped when it comes up)
            return self._rpc_failed(event.rpc, pending, now, blame=False)
        if isinstance(event, FindNodes):
            return self._start(event.op, OpKind.FIND, event.target, now)
        if isinstance(event, GetRecords):
            return self._start(event.op, OpKind.GET, event.key, now, get_kind=event.kind,
                               ask_network=event.lookup)
        return self._publish(event.op, event.record, now)

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self._timeouts and self._timeouts[0][0] <= now:
            _, rpc = heapq.heappop(self._timeouts)
            pending = self._pending.pop(rpc, None)
            if pending is not None:
                self.counters["rpc_timeouts"] += 1
                actions += self._rpc_failed(rpc, pending, now, timed_out=True)
        for op in list(self._ops.values()):
            if not op.storing:
                op.lookup.tick(now)
                actions += self._advance(op, now)
        actions += [RecordExpired(r) for r in self.store.expire(now)]
        actions += self._maintain(now)
        return actions

    def next_deadline(self) -> float | None:
        soonest = self.table.next_refresh()
        timeouts, pending = self._timeouts, self._pending
        while timeouts and timeouts[0][1] not in pending:
            heapq.heappop(timeouts)  # answered already: no tick needed for it
        if timeouts:
            soonest = min(soonest, timeouts[0][0])
        for op in self._ops.values():
            if not op.storing:
                soonest = min(soonest, op.lookup.next_deadline())
        stored = self.store.next_deadline()
        if stored is not None:
            soonest = min(soonest, stored)
        if self._republish:
            soonest = min(soonest, self._republish[0][0])
        return soonest

    # --- messages from peers --------------------------------------------------------------------

    def _on_received(self, sender: Contact, payload: object, now: float) -> list[Action]:
        try:
            message = payload if isinstance(payload, _MESSAGES) else decode_message(payload)
        except DecodeError as exc:
            self.counters["malformed"] += 1
            _log.debug("malformed DHT message from %s: %s", short_id(sender.node), exc)
            return []
        if isinstance(message, _REPLIES):
            return self._on_reply(sender, message, now)
        return self._server.serve(sender, message, now)

    # --- our own RPCs ---------------------------------------------------------------------------

    def _request(self, op: Operation, to: Contact, message: Message, now: float) -> Send:
        self._pending[message.rpc] = _Pending(to, op.op)
        heapq.heappush(self._timeouts, (now + self.config.rpc_timeout, message.rpc))
        return Send(to, message)

    def _rpc_id(self) -> int:
        self._next_rpc = (self._next_rpc + 1) % 2**64
        return self._next_rpc

    def _on_reply(self, sender: Contact, message: Nodes | Values | Stored,
                  now: float) -> list[Action]:
        pending = self._pending.get(message.rpc)
        if pending is None or pending.contact.node != sender.node:
            self.counters["unexpected_replies"] += 1
            return []
        del self._pending[message.rpc]
        self.table.seen(sender, now)
        op = self._ops.get(pending.op)
        if op is None:
            return []
        if isinstance(message, Stored):
            return self._on_stored(op, message, now)
        if not op.lookup.on_reply(sender.node, message.contacts):
            return []
        if isinstance(message, Values) and op.kind is OpKind.GET:
            target, kind, verify = op.lookup.target, op.get_kind, self._server.verify
            valid = [r for r in message.records if r.key == target and r.kind is kind and verify(r)]
            self.counters["bad_records"] += len(message.records) - len(valid)
            for record in valid:
                op.merge(record)
            if valid:
                op.lookup.value_hops = op.lookup.hops_of(sender.node)
                op.lookup.finish()
        return self._advance(op, now)

    def _on_stored(self, op: Operation, message: Stored, now: float) -> list[Action]:
        if message.rpc not in op.awaiting:
            return []
        op.awaiting.discard(message.rpc)
        op.stored += message.verdict.accepted
        return self._finish_put(op) if not op.awaiting else []

    def _rpc_failed(self, rpc: int, pending: _Pending, now: float, *,
                    timed_out: bool = False, blame: bool = True) -> list[Action]:
        """An RPC ended without an answer: its operation moves on; ``blame``: it counts
        against the peer in the routing table (not for an RPC the shell ``Abandoned``)."""
        node = pending.contact.node
        actions: list[Action] = list(self.table.failed(node)) if blame else []
        op = self._ops.get(pending.op)
        if op is None:
            return actions
        if rpc in op.awaiting:
            op.awaiting.discard(rpc)
            if not op.awaiting:
                actions += self._finish_put(op)
        elif op.lookup.on_failure(node, timed_out=timed_out):
            actions += self._advance(op, now)
        return actions

    # --- operations -----------------------------------------------------------------------------

    def _start(self, op_id: Hashable, kind: OpKind, target: bytes, now: float, *,
               get_kind: Kind = Kind.VALUE, record: Record | None = None,
               internal: bool = False, ask_network: bool = False) -> list[Action]:
        if op_id in self._ops:
            raise LocalProtocolError(f"operation {op_id!r} is already running")
        known: list[Record] = []  # a get's: records held here, ours or kept for others
        if kind is OpKind.GET:
            held = self.store.get(get_kind, target)
            own = self._own.get((get_kind, target, self._own_key))
            known = held if own is None else [*held, own]
            if held and not ask_network:  # we hold it: the answer a holder would give
                self.counters["gets_held"] += 1
                lookup = Lookup(self.node_id, target, [], self.config, now)  # (nothing to seed)
                op = Operation(op_id, kind, lookup, internal=internal, get_kind=get_kind)
                for record_held in known:
                    op.merge(record_held)
                return self._done(op, op.found())
            seeds = self.table.closest_known(target, self.config.k)
        else:
            seeds = self.table.closest(target, self.config.k)
        lookup = Lookup(self.node_id, target, seeds, self.config, now,
                        narrow=kind is OpKind.GET)
        op = Operation(op_id, kind, lookup, internal=internal, record=record, get_kind=get_kind)
        for record_held in known:
            op.merge(record_held)
        if len(self._ops) >= self.config.max_operations:
            self.counters["operations_refused"] += 1
            lookup.finish()
            return [] if internal else self._done(op, ())
        self.table.touch(target, now)
        self._ops[op_id] = op
        return self._advance(op, now)

    def _advance(self, op: Operation, now: float) -> list[Action]:
        if op.storing:
            return []
        lookup = op.lookup
        actions: list[Action] = []
        for contact in lookup.next_queries(now):
            if len(self._pending) >= self.config.max_pending_rpcs:
                lookup.on_failure(contact.node)
                self.counters["rpcs_refused"] += 1
                continue
            rpc = self._rpc_id()
            message: Message = (FindValue(rpc, lookup.target, op.get_kind)
                                if op.kind is OpKind.GET else FindNode(rpc, lookup.target))
            actions.append(self._request(op, contact, message, now))
        if not lookup.finished:
            return actions
        if op.kind is not OpKind.PUT:
            del self._ops[op.op]
            return actions + self._done(op, op.found())
        return actions + self._store_phase(op, now)

    def _done(self, op: Operation, found: tuple[Record, ...]) -> list[Action]:
        if op.internal:
            return []
        result = op.lookup.result()
        if op.kind is OpKind.FIND:
            return [LookupDone(op.op, op.lookup.target, result)]
        return [GetDone(op.op, op.lookup.target, op.get_kind, found, result)]

    def _store_phase(self, op: Operation, now: float) -> list[Action]:
        record = op.record
        assert record is not None
        goal = int.from_bytes(record.key, "big")
        closest = sorted([*op.lookup.result().closest, self.contact],
                         key=lambda c: int.from_bytes(c.node, "big") ^ goal)[: self.config.k]
        actions: list[Action] = []
        if self.contact in closest:  # we are one of the k closest: hold it ourselves
            closest.remove(self.contact)
            verdict = self.store.put(record, now, self._server.verify)
            op.stored += verdict.accepted
            if verdict is Verdict.STORED:
                actions.append(RecordStored(record))
        for contact in closest:
            if len(self._pending) >= self.config.max_pending_rpcs:
                self.counters["rpcs_refused"] += 1
                break
            rpc = self._rpc_id()
            op.awaiting.add(rpc)
            actions.append(self._request(op, contact, Store(rpc, record), now))
        op.stores_sent = max(1, len(op.awaiting))
        if not op.awaiting:
            actions += self._finish_put(op)
        return actions

    def _finish_put(self, op: Operation) -> list[Action]:
        self._ops.pop(op.op, None)
        if op.internal:
            return []
        assert op.record is not None
        return [PutDone(op.op, op.record.key, op.stored, op.lookup.result())]

    def _publish(self, op_id: Hashable, record: Record, now: float) -> list[Action]:
        if record.publisher != self.node_id:
            raise LocalProtocolError("a node publishes only records it signed itself")
        held = self._own.get(record.slot)
        self._own_key = record.publisher_key
        if held is None or record.version >= held.version:
            self._own[record.slot] = record
            self._schedule_republish(record.slot, now + self.config.republish_interval)
            self._server.remember(record)  # ours: it comes back in gets needing no check
        return self._start(op_id, OpKind.PUT, record.key, now, record=record)

    def _schedule_republish(self, slot: tuple[Kind, bytes, bytes], at: float) -> None:
        # One live entry per slot: a superseded one is skipped when it comes up.
        self._republish_at[slot] = at
        heapq.heappush(self._republish, (at, slot))

    def _replicate(self, record: Record, now: float) -> list[Action]:
        return self._start(("replicate", next(self._internal)), OpKind.PUT, record.key, now,
                           record=record, internal=True)

    # --- upkeep ---------------------------------------------------------------------------------

    def _maintain(self, now: float) -> list[Action]:
        actions: list[Action] = []
        room = self.config.max_operations - len(self._ops)
        for record in self.store.due_for_replication(now, min(room, self.config.replicate_batch)):
            if record.slot not in self._own:
                actions += self._replicate(record, now)
        while self._republish and self._republish[0][0] <= now:
            when, slot = heapq.heappop(self._republish)
            own = self._own.get(slot)
            if own is not None and self._republish_at.get(slot) == when:
                self._schedule_republish(slot, now + self.config.republish_interval)
                actions += self._replicate(own, now)
        if self.table.next_refresh() <= now:
            for target in self.table.refresh_targets(now, self._rng):
                actions += self._start(("refresh", next(self._internal)), OpKind.FIND, target,
                                       now, internal=True)
        return actions

    def _node_gone(self, node: bytes, now: float) -> list[Action]:
        """``node`` left the table: re-replicate soon what it was one of the k closest to."""
        dead = int.from_bytes(node, "big")
        mine = int.from_bytes(self.node_id, "big")
        k = self.config.k
        for record in self.store:
            goal = int.from_bytes(record.key, "big")
            nearest = self.table.closest(record.key, k)
            distances = [int.from_bytes(c.node, "big") ^ goal for c in nearest]
            was_close = len(distances) < k or dead ^ goal < distances[-1]
            leader = sum(d < mine ^ goal for d in distances) < _REPAIR_LEADERS
            if was_close and leader:
                self.store.mark_for_replication(record, now)
        return []

    # --- views ----------------------------------------------------------------------------------

    @property
    def operations(self) -> int:
        return len(self._ops)

    @property
    def pending_rpcs(self) -> int:
        return len(self._pending)

    def own_records(self) -> list[Record]:
        return list(self._own.values())
