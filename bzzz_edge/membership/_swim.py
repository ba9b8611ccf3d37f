"""The SWIM membership core: failure detection, suspicion, dissemination. Sans-IO.

No sockets, no clock, no tasks: ``handle(event, now)`` and ``tick(now)`` return the actions the
driver must perform, and ``next_deadline()`` says when ``tick`` is next needed. It follows SWIM
with the refinements hashicorp/memberlist and Lifeguard add:

- failure detection (``_detector``): one member probed per period in a fixed random order; a
  ping that gets no ack within that member's probe timeout (from its measured round trips) is
  retried through ``indirect_checks`` random members (ping-req), who answer with the relayed
  ack or a nack; local health (Lifeguard) stretches our own timing when we are the slow one,
  and a late tick (a starved event loop) puts off the verdicts that fell due meanwhile;
- suspicion: a member that misses the whole probe period is suspected at its incarnation; the
  suspicion expires into "dead" after a timeout that scales with log10(n), lasts at least a
  few of the suspect's probe timeouts and shrinks as other members confirm it; the suspected
  member refutes by raising its incarnation, and sends the refutation to every live member at
  once besides gossiping it, since it races their timers; a member still holding news about an
  older incarnation of this node is answered directly;
- buddy system: a message to a member we suspect (or hold dead) carries that news first, so it
  can refute at once;
- dissemination (``_dissemination``): news is piggybacked on every message and pushed by
  gossip rounds while there is any, each piece sent ``retransmit_mult * ceil(log10(n + 1))``
  times, newer news about a node replacing older;
- full-state exchange (push-pull, ``_exchange``) on join, periodically with a random member,
  and with a random dead member (reconnect), which heals partitions: remote "dead" is merged
  as "suspect", so a live node hears it and refutes; a message from a member we do not know,
  or hold dead, starts such an exchange too;
- graceful leave: a node's own dead message, sent to every member.

Rejoining after a restart: pass ``incarnation`` above the one this node had before. The
application sees every change of this node's incarnation as a ``MemberEvent`` about itself and
should persist it; on start it passes ``start_incarnation(persisted)``, which is the persisted
value plus one, or 0 for anything missing or out of range. Neither needs to be exact: news that
others hold about this node at a higher incarnation (dead, suspect or alive) is refuted with a
still higher one, so a node that starts too low catches up after one exchange. News from third
parties that raises an incarnation implausibly far is dropped (``_limits``), so no claim can
put a node beyond refutation.

The member table and every message built from it are bounded (``_table``, ``_limits``): full
state exchanges are split into parts within ``max_message_bytes``.

Messages from peers go through ``_inbound``: those that do not decode, or that break the
protocol, are counted in ``counters`` and logged at DEBUG; they never raise out of ``handle``.
Those that do not decode (fields out of range, metadata or a full state over the limits) and
those carrying news with an implausible incarnation also yield a ``Penalise`` action against
the sender, one per message, which the driver turns into a strike: honest members send neither.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

from bzzz_edge.errors import DecodeError, LocalProtocolError
from bzzz_edge.ids import short_id
from bzzz_edge.membership._config import (
    MembershipConfig,
    lan,
)
from bzzz_edge.membership._detector import FailureDetector
from bzzz_edge.membership._dissemination import Dissemination
from bzzz_edge.membership._events import (
    Action,
    ConnectionLost,
    Event,
    ForceLeave,
    Join,
    Leave,
    MemberForgotten,
    Received,
    Send,
    UpdateSelf,
)
from bzzz_edge.membership._exchange import StateExchange
from bzzz_edge.membership._inbound import Inbound
from bzzz_edge.membership._messages import (
    MAX_INCARNATION,
    SEQ_MODULUS,
    Address,
    DeadUpdate,
    Gossip,
    Message,
    Meta,
    Status,
    check_address,
    check_meta,
    check_node_id,
)
from bzzz_edge.membership._probe import ProbeOrder
from bzzz_edge.membership._table import GONE, LIVE, Member, MemberTable

__all__ = ["Member", "Membership"]

_log = logging.getLogger(__name__)


class Membership:
    """SWIM membership of one node. See the module docstring.

    Args:
        self_id: this node's ID.
        address: where this node accepts connections.
        now: the current time, in seconds on the driver's monotonic clock.
        config: timing profile; ``lan()`` when omitted.
        incarnation: starting incarnation (see the module docstring on restarts).
        meta: small metadata spread with this node's alive news (e.g. protocol version).
        rng: source of randomness; pass a seeded one for reproducible runs.

    Raises:
        LocalProtocolError: an argument is out of range.
    """

    def __init__(
        self,
        self_id: bytes,
        *,
        address: Address,
        now: float,
        config: MembershipConfig | None = None,
        incarnation: int = 0,
        meta: Meta | None = None,
        rng: random.Random | None = None,
    ) -> None:
        try:
            check_node_id(self_id, "self_id")
            address = check_address(address.host, address.port)
            frozen_meta = check_meta(meta or {})
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from exc
        if not isinstance(incarnation, int) or not 0 <= incarnation < MAX_INCARNATION:
            raise LocalProtocolError(
                f"incarnation: expected an int in [0, 2**63 - 1), got {incarnation!r}"
            )
        self._config = cfg = config if config is not None else lan()
        self._rng = rng if rng is not None else random.Random()
        self._counters: Counter[str] = Counter()
        self._out: list[Action] = []
        me = Member(self_id, Status.ALIVE, incarnation, address, frozen_meta, now, True)
        self._table = MemberTable(
            me,
            cfg,
            ProbeOrder(self._rng),
            self._out,
            self._counters,
            self._refuted,
            lambda node, n: self._detector.suspicion_bounds(node, n),
        )
        self._detector = FailureDetector(
            cfg, self._table, self._rng, self._counters, self._send, self._next_seq, now
        )
        # The deadline we last asked to be ticked at, to notice timers that fire late.
        self._scheduled: float | None = None
        self._id = self_id
        # A random first sequence number, so acks meant for a previous life are not matched.
        self._seq = self._rng.randrange(SEQ_MODULUS)
        self._exchange = StateExchange(cfg, self._table, self._rng, self._counters, self._send, now)
        self._dissemination = Dissemination(cfg, self._table, self._rng, self._send, now)
        self._inbound = Inbound(
            self_id,
            self._table,
            self._detector,
            self._exchange,
            self._dissemination,
            self._counters,
            self._send,
            self._out,
        )

    # --- views ----------------------------------------------------------------------------------

    @property
    def self_id(self) -> bytes:
        return self._id

    @property
    def config(self) -> MembershipConfig:
        return self._config

    @property
    def incarnation(self) -> int:
        """This node's current incarnation."""
        return self._table.me.incarnation

    @property
    def has_left(self) -> bool:
        return self._table.left

    @property
    def local_health(self) -> int:
        """Lifeguard's awareness score: 0 is healthy; probe timing is stretched by score + 1."""
        return self._detector.awareness

    def probe_timeout(self, node: bytes) -> float:
        """The current probe timeout of ``node`` (before local-health stretching)."""
        return self._detector.rtt.timeout(node)

    def rtt(self, node: bytes) -> tuple[float, float] | None:
        """Smoothed round trip and its variation to ``node``, if measured."""
        estimate = self._detector.rtt.get(node)
        return None if estimate is None else (estimate.srtt, estimate.rttvar)

    @property
    def counters(self) -> Mapping[str, int]:
        """Event counts (malformed messages, protocol errors, probes, refutations, ...)."""
        return MappingProxyType(self._counters)

    def member(self, node: bytes) -> Member | None:
        return self._table.get(node)

    def status_of(self, node: bytes) -> Status | None:
        member = self._table.get(node)
        return None if member is None else member.status

    def members(self) -> list[Member]:
        """Every member this node remembers, itself included, dead and departed too."""
        return self._table.members()

    def alive_members(self) -> list[Member]:
        """Members not known to have failed or left (alive or suspect), this node included."""
        return [m for m in self._table.members() if m.status in LIVE]

    def num_live(self) -> int:
        """How many members are alive or suspect, this node included: the cluster size n."""
        return self._table.num_live()

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called, or None if nothing is scheduled."""
        self._scheduled = deadline = self._compute_deadline()
        return deadline

    def _compute_deadline(self) -> float | None:
        table = self._table
        candidates: list[float] = []
        if self._dissemination.due():
            candidates.append(self._dissemination.next_gossip)
        if table.left:
            return min(candidates, default=None)
        if table.num_live() > 1:
            candidates += (self._detector.next_probe, self._exchange.next_push_pull)
        if table.count(*GONE) or table.unverified:
            candidates.append(self._exchange.next_reconnect)
        candidates.extend(self._detector.deadlines())
        candidates.extend(self._exchange.deadlines())
        candidates.extend(s.deadline for s in table.suspicions.values())
        return min(candidates, default=None)

    # --- inputs ---------------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process an event from a peer or the application; return the actions to perform.

        Raises:
            LocalProtocolError: the application asked for something invalid (bad arguments,
                an unknown event type, joining or updating after leaving).
        """
        if isinstance(event, Received):
            self._inbound.receive(event, now)
        elif isinstance(event, Join):
            self._on_join(event, now)
        elif isinstance(event, ConnectionLost):
            self._on_connection_lost(event.node, now)
        elif isinstance(event, Leave):
            self._on_leave(now)
        elif isinstance(event, UpdateSelf):
            self._on_update_self(event, now)
        elif isinstance(event, ForceLeave):
            self._on_force_leave(event.node, now)
        else:
            raise LocalProtocolError(f"membership cannot handle {type(event).__name__}")
        return self._flush()

    def tick(self, now: float) -> list[Action]:
        """Run every timer that is due at ``now``; return the actions to perform."""
        scheduled, self._scheduled = self._scheduled, None
        if scheduled is not None and now - scheduled > self._config.late_timer_threshold:
            self._detector.late(now)
        if not self._table.left:
            self._detector.check(now)
            self._table.expire_suspicions(now)
            self._exchange.tick(now)
            if now >= self._detector.next_probe:
                self._detector.probe_round(now)
        self._dissemination.tick(now)
        return self._flush()

    def _flush(self) -> list[Action]:
        self._dissemination.flush()
        out = self._out.copy()
        self._out.clear()
        for action in out:
            if isinstance(action, MemberForgotten):
                self._detector.forget(action.node)
        return out

    # --- requests from the application ----------------------------------------------------------

    def _on_join(self, event: Join, now: float) -> None:
        if self._table.left:
            raise LocalProtocolError("cannot join after leaving; start a new Membership")
        try:
            node = check_node_id(event.node, "join.node")
            address = check_address(event.address.host, event.address.port, "join.address")
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._detector.heard(node)  # the driver reports (re)connections as joins
        current = self._table.get(node)
        # Discovery also reports this node itself, and nodes we already count as alive.
        if node != self._id and (current is None or current.status in GONE):
            self._exchange.join(node, address, now)

    def _on_connection_lost(self, node: bytes, now: float) -> None:
        member = self._table.get(node)
        if self._table.left or member is None or member.status not in LIVE or node == self._id:
            return
        self._detector.connection_lost(node, now)

    def _on_leave(self, now: float) -> None:
        if self._table.left:
            return
        update = self._table.leave(now)
        self._detector.clear()
        self._exchange.clear()
        # Tell everyone directly: on a small full mesh this is cheaper than waiting for gossip,
        # and the queued copy covers messages lost on the way.
        self._dissemination.tell_live(update)

    def _on_update_self(self, event: UpdateSelf, now: float) -> None:
        if self._table.left:
            raise LocalProtocolError("cannot update a node that has left")
        me = self._table.me
        try:
            address = me.address
            if event.address is not None:
                address = check_address(event.address.host, event.address.port)
            meta = me.meta if event.meta is None else check_meta(event.meta)
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._table.become(me.incarnation + 1, address, meta, now)

    def _on_force_leave(self, node: bytes, now: float) -> None:
        member = self._table.get(node)
        if self._table.left:
            raise LocalProtocolError("cannot force a member out after leaving")
        if node == self._id:
            raise LocalProtocolError("force-leave names this node itself; use Leave")
        if member is None:
            raise LocalProtocolError(f"force-leave: no member {short_id(node)}")
        self._detector.stop_probing(node)
        update = DeadUpdate(node, member.incarnation, node)
        self._table.apply(update, now)
        # Gossip skips departed members; tell the member itself, so a live one refutes at once.
        self._send(node, Gossip((update,)))

    # --- helpers --------------------------------------------------------------------------------

    def _refuted(self) -> None:
        # Being suspected hints that we are the slow one (Lifeguard).
        self._detector.adjust_health(1)
        self._dissemination.refuted()

    def _send(self, to: bytes, message: Message, address: Address | None = None) -> None:
        if address is None:
            member = self._table.get(to)
            address = None if member is None else member.address
        self._out.append(Send(to, message, address))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % SEQ_MODULUS
        return self._seq
