"""The membership service: drives the sans-IO SWIM core over the node's connections. Trio.

Data flows one way through it:
- the connection manager's ``events`` feed (peers connected and lost) becomes the core's
  ``Join`` and ``ConnectionLost`` events; SWIM envelopes, handed over by the connections, become
  ``Received`` events;
- the core's ``Send`` actions go out over the connections (a send that fails is a lost
  connection to the core, and a reason to dial); its ``MemberEvent`` actions update the peer
  table, the dial book and the public ``changes`` feed; ``MemberForgotten`` drops a peer;
  ``Penalise`` (a peer's malformed or implausible claim) is a strike through the transport's
  guard, the route gossip's penalties take;
- events and actions go to handlers looked up by their type; a type without one is counted
  (``unhandled_types``) and logged, never ignored in silence;
- a ticker sleeps until the core's next deadline and runs its timers.

``changes`` is the member-change stream for the layers above (coordination): every status
change of every member, never dropped silently (see ``feed``).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import msgpack
import trio

from ..errors import LocalProtocolError
from ..feed import Feed, Overflowed
from ..ids import format_node_id, short_id
from ..net import ConnectionManager, PeerConnected, PeerDisconnected, Source
from ..store.peers import PeerRecord, PeerTable
from ..wire.envelope import DirectMessage, Envelope, encode_envelope
from ..wire.types import SWIM
from . import (
    Action,
    Address,
    ConnectionLost,
    Event,
    ForceLeave,
    Join,
    Leave,
    MemberEvent,
    MemberForgotten,
    Membership,
    MembershipConfig,
    Penalise,
    Received,
    Send,
    Status,
    UpdateSelf,
    encode_message,
    start_incarnation,
)

__all__ = ["MembershipService", "PeerView"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer as the API and CLI show it."""

    node_id: str
    name: str
    status: str
    incarnation: int
    address: str
    connected: bool
    since_s: float

    def as_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


class MembershipService:
    """Runs SWIM for one node.

    Args:
        manager: the node's connections; the service registers its envelope type there.
        table: where peers and our incarnation are remembered.
        profile: the core's timings.
        advertise: the IP address to announce ('' to learn it from what peers see).
        meta: what we tell peers about ourselves (name, protocol version).
    """

    def __init__(self, manager: ConnectionManager, table: PeerTable, *,
                 profile: MembershipConfig, advertise: str, meta: dict[str, Any]) -> None:
        self._manager = manager
        self._table = table
        self._profile = profile
        self._advertise = advertise
        self._meta = meta
        self.node_id = manager.node_id
        self.core: Membership | None = None
        self.changes: Feed[MemberEvent] = Feed("member changes")
        self.started = trio.Event()
        self._sleeping: trio.CancelScope | None = None  # the ticker's wait, while it waits
        self.malformed = 0
        # What to do with each type the connection feed and the core hand us, looked up by
        # type: a type nobody handles is counted and logged once, never silently ignored.
        self._on_feed: dict[type, Callable[[Any], None]] = {
            Overflowed: self._on_overflowed,
            PeerConnected: self._on_peer_connected,
            PeerDisconnected: self._on_peer_disconnected,
        }
        self._on_action: dict[type, Callable[[Any], bytes | None]] = {
            Send: self._send,
            MemberEvent: self._on_member_event,
            MemberForgotten: self._on_member_forgotten,
            Penalise: self._on_penalise,
        }
        self.unhandled: Counter[str] = Counter()
        # Before the transport runs, so no connection or message comes before we listen.
        self._events = manager.events.subscribe()
        manager.on_envelope(SWIM, self._on_swim)

    # --- views --------------------------------------------------------------------------------

    def alive_peers(self) -> int:
        if self.core is None:
            return 0
        return sum(1 for m in self.core.alive_members() if m.node != self.node_id)

    def peers(self) -> list[PeerView]:
        if self.core is None:
            return []
        now = trio.current_time()
        connected = self._manager.connections
        return [
            PeerView(format_node_id(m.node), str(m.meta.get("name", "")), m.status.name.lower(),
                     m.incarnation, f"{m.address.host}:{m.address.port}", m.node in connected,
                     round(now - m.since, 3))
            for m in self.core.members() if m.node != self.node_id
        ]

    def counters(self) -> dict[str, int]:
        out = dict(self.core.counters) if self.core is not None else {}
        out["swim_malformed"] = self.malformed
        out["unhandled_types"] = sum(self.unhandled.values())
        out["member_change_overflows"] = self.changes.overflows
        return out

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        port = self._manager.port
        host = self._advertise or self._manager.listen_address[0] or "0.0.0.0"
        stored = self._table.stored_incarnation()
        incarnation = start_incarnation(stored)
        if stored is not None and incarnation == 0:
            log.warning("stored incarnation %r is out of range; starting from 0", stored)
        self._table.store_incarnation_now(incarnation)
        self.core = Membership(self.node_id, address=Address(host, port),
                               now=trio.current_time(), config=self._profile,
                               incarnation=incarnation, meta=self._meta)
        for node, record in self._table.remembered():
            if record.status in ("alive", "suspect") and node != self.node_id:
                self._manager.want((record.host, record.port), Source.PEER_TABLE, node)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._follow_connections, self._events)
            self.started.set()
            task_status.started()

    def force_leave(self, node: bytes) -> None:
        """Mark ``node`` departed everywhere, on its behalf (Serf's force-leave).

        Raises:
            LocalProtocolError: ``node`` is not a member, is this node, or we have left.
        """
        if self.core is None:
            raise LocalProtocolError("membership is not running")
        self._perform(self.core.handle(ForceLeave(node), trio.current_time()))

    async def leave(self) -> None:
        """Tell the others we are leaving (pre-shutdown); connections flush it as they close."""
        if self.core is not None and not self.core.has_left:
            self._perform(self.core.handle(Leave(), trio.current_time()))

    async def _ticker(self) -> None:
        assert self.core is not None
        while True:
            deadline = self.core.next_deadline()
            with trio.CancelScope(deadline=deadline if deadline is not None
                                  else trio.current_time() + 1) as self._sleeping:
                await trio.sleep_forever()
            self._sleeping = None
            # An ack that arrived while another task held the loop (a long step: a flood of
            # gossip handled, a large write) is read before any verdict falls on its probe.
            # A stall shorter than ``late_timer_threshold`` is not seen as one, and the timer
            # and the ack's reader become ready in the same scheduling pass, run in either
            # order: after a checkpoint the tick comes once that pass ran (the second one is
            # for a reader that only one more poll finds ready).
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            self._perform(self.core.tick(trio.current_time()), wake_ticker=False)

    async def _follow_connections(self, events: Any) -> None:
        async for event in events:
            (self._on_feed.get(type(event)) or self._unhandled)(event)

    def _on_overflowed(self, _event: Overflowed) -> None:
        self._resync()

    def _on_peer_connected(self, event: PeerConnected) -> None:
        self._learn_own_address(event.hello.get("observed"))
        self._perform(self._handle(Join(event.peer_id, Address(*event.address))))

    def _on_peer_disconnected(self, event: PeerDisconnected) -> None:
        self._perform(self._handle(ConnectionLost(event.peer_id)))

    def _unhandled(self, item: object) -> None:
        """A type no handler is registered for: a bug on our side, so counted and logged
        (loudly the first time per type) rather than dropped in silence."""
        name = type(item).__name__
        self.unhandled[name] += 1
        level = logging.WARNING if self.unhandled[name] == 1 else logging.DEBUG
        log.log(level, "membership service has no handler for %s", name)

    def _resync(self) -> None:
        """We missed connection events: rejoin every peer connected now; the rest are probed."""
        connections = self._manager.connections
        for node, conn in connections.items():
            port = conn.hello.get("port")
            if isinstance(port, int):
                self._perform(self._handle(Join(node, Address(conn.remote_ip, port))))
        assert self.core is not None
        for member in self.core.alive_members():
            if member.node != self.node_id and member.node not in connections:
                self._perform(self._handle(ConnectionLost(member.node)))

    def _on_swim(self, sender: bytes, received: Envelope) -> None:
        # Registered for SWIM only, a direct message type: the handler table is keyed by kind.
        envelope = cast(DirectMessage, received)
        if self.core is None:
            return  # not started yet: the peer repeats what matters (probes, syncs)
        try:
            payload = msgpack.unpackb(envelope.body)
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
            self.malformed += 1
            self._manager.strike(sender, "malformed membership message")
            return
        self._perform(self._handle(Received(sender, payload)))

    def _handle(self, event: Event) -> list[Action]:
        """Feed the core an event, unless we have left; a refused event is logged, not fatal."""
        assert self.core is not None
        if self.core.has_left:
            return []
        try:
            return self.core.handle(event, trio.current_time())
        except LocalProtocolError as exc:
            log.debug("membership refused %s: %s", type(event).__name__, exc)
            return []

    def _learn_own_address(self, observed: object) -> None:
        """Listening on all interfaces, we learn our address from what peers see."""
        assert self.core is not None
        me = self.core.member(self.node_id)
        if me is None or me.address.host not in ("0.0.0.0", "::") or not isinstance(observed, str):
            return
        try:
            if ipaddress.ip_address(observed).is_unspecified:
                return
        except ValueError:
            return
        self._perform(self._handle(UpdateSelf(address=Address(observed, self._manager.port))))

    def _perform(self, actions: list[Action], *, wake_ticker: bool = True) -> None:
        """Carry out the core's actions; then let the ticker re-read the core's next deadline
        (an event may have moved it earlier)."""
        lost: list[bytes] = []
        for action in actions:
            node = (self._on_action.get(type(action)) or self._unhandled)(action)
            if node is not None:
                lost.append(node)
        for node in lost:  # the core's docstring: a failed send is a lost connection
            self._perform(self._handle(ConnectionLost(node)), wake_ticker=False)
        if wake_ticker and self._sleeping is not None and self.core is not None:
            # Move the ticker's alarm rather than wake it to re-read it: a task switch and an
            # idle tick less per message (most of them, in an idle cluster).
            deadline = self.core.next_deadline()
            self._sleeping.deadline = deadline if deadline is not None \
                else trio.current_time() + 1

    # --- the core's actions (each handler returns a node whose connection was lost, if any) -

    def _send(self, action: Send) -> bytes | None:
        payload = encode_envelope(DirectMessage(
            *SWIM.key, msgpack.packb(encode_message(action.message), use_bin_type=True)))
        # Urgent: ahead of gossip and the rest queued for that peer, so a flood relayed to it
        # can neither drop nor delay a probe or an ack (a false death).
        if self._manager.send(action.to, payload, urgent=True):
            return None
        if action.address is not None and action.to not in self._manager.connections:
            member = self.core.member(action.to) if self.core is not None else None
            source = Source.MEMBERSHIP if member is not None and member.verified \
                else Source.RUMOUR
            self._manager.want((action.address.host, action.address.port), source, action.to)
        return action.to

    def _on_member_forgotten(self, action: MemberForgotten) -> None:
        self._table.forget(action.node)
        self._manager.unwant_node(action.node)

    def _on_penalise(self, action: Penalise) -> None:
        """A peer made a claim no honest member makes: a strike, through the transport's
        guard, as gossip charges floods and duplicates."""
        self._manager.strike(action.peer, f"membership {action.offence.value}")

    def _on_member_event(self, event: MemberEvent) -> None:
        if event.node == self.node_id:
            self._table.set_incarnation(event.incarnation)
            return
        old = event.old_status.name.lower() if event.old_status else "new"
        log.info("peer %s %s -> %s (incarnation %d)", short_id(event.node), old,
                 event.new_status.name.lower(), event.incarnation,
                 extra={"event": "member_status", "peer": short_id(event.node),
                        "status": event.new_status.name.lower(),
                        "incarnation": event.incarnation})
        address = (event.address.host, event.address.port)
        if event.new_status not in (Status.ALIVE, Status.SUSPECT):
            self._manager.unwant_node(event.node)
        elif event.verified:
            self._manager.want(address, Source.MEMBERSHIP, event.node)
        # A member known only from others' news is dialled when we first send it something
        # (``_send``), as a rumour: a few at a time, so a peer gossiping a thousand made-up
        # members cannot make us dial a thousand addresses.
        if event.verified:  # and a rumour is not remembered across restarts
            self._table.record(event.node, PeerRecord(
                event.address.host, event.address.port, event.new_status.name.lower(),
                event.incarnation, str(event.meta.get("name", "")), time.time()))
        self.changes.publish(event)
