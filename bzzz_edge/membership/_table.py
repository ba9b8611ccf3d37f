"""What one node knows about the members, and the rules for accepting news about them. No I/O.

The rules are SWIM's, ordered by incarnation as in memberlist:

- alive at i replaces anything held at an incarnation below i;
- suspect at i replaces alive at i or below; about a member already suspect it is a
  confirmation (Lifeguard), which shortens the suspicion;
- dead at i replaces alive or suspect at i or below; a member's own dead message is a leave;
- news about this node itself that is not its own current alive state (suspect, dead, alive
  at a higher incarnation) is refuted by raising the incarnation above it;
- in a full-state exchange another node's "dead" counts only as "suspect", so the member gets
  a chance to refute before we act on a verdict we did not reach ourselves;
- news from a third party that raises an incarnation implausibly far is dropped (``_limits``);
  a member speaking for itself is believed.

The table is bounded: in members, in members never heard from directly (which are forgotten
after a while unless they speak up), and in bytes. A member that talks to us itself displaces
the oldest unverified one when the table is full; others' news about new members is refused.

Every accepted piece of news is queued for dissemination, and every change the application
should see becomes a ``MemberEvent`` in the shared output list.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from bzzz_edge.ids import short_id
from bzzz_edge.membership._broadcast import BroadcastQueue
from bzzz_edge.membership._config import MembershipConfig, retransmit_limit
from bzzz_edge.membership._events import Action, MemberEvent, MemberForgotten
from bzzz_edge.membership._limits import (
    MESSAGE_OVERHEAD,
    plausible_incarnation,
    record_size,
    update_size,
)
from bzzz_edge.membership._messages import (
    MAX_INCARNATION,
    Address,
    AliveUpdate,
    DeadUpdate,
    Meta,
    Status,
    SuspectUpdate,
    SyncEntry,
    Update,
)
from bzzz_edge.membership._probe import ProbeOrder
from bzzz_edge.membership._suspicion import Suspicion, confirmation_count

__all__ = ["GONE", "LIVE", "Member", "MemberTable"]

_log = logging.getLogger(__name__)

LIVE = (Status.ALIVE, Status.SUSPECT)
GONE = (Status.DEAD, Status.LEFT)


@dataclass(frozen=True, slots=True)
class Member:
    """One member as this node sees it; ``since`` is when its status last changed.

    ``verified``: it has sent us something itself (over its own authenticated connection),
    rather than being known only from other members' news.
    """

    node: bytes
    status: Status
    incarnation: int
    address: Address
    meta: Meta
    since: float
    verified: bool = False


class MemberTable:
    """The members, their suspicions, the news queue, and the probe order.

    Args:
        out: the core's output list; member events are appended to it.
        on_refute: called when this node refutes news about itself (a local-health signal).
        suspicion_bounds: the (minimum, maximum) suspicion timeout of a member, given the
            cluster size; the core derives them from the member's round trips.
    """

    def __init__(
        self,
        self_member: Member,
        config: MembershipConfig,
        order: ProbeOrder,
        out: list[Action],
        counters: Counter[str],
        on_refute: Callable[[], None],
        suspicion_bounds: Callable[[bytes, int], tuple[float, float]],
    ) -> None:
        self.self_id = self_member.node
        self.config = config
        self.order = order
        self.queue = BroadcastQueue()
        self.suspicions: dict[bytes, Suspicion] = {}
        self.left = False
        # Set when news about an older life of this node arrives; the core, which knows who
        # sent it, resets it before applying a message and answers the sender if it is set.
        self.stale_self_news = False
        self._members: dict[bytes, Member] = {self_member.node: self_member}
        self._bytes = record_size(self_member.address, self_member.meta)
        # Members never heard from directly, by when we learnt of them (oldest first).
        self._unverified: dict[bytes, float] = {}
        self._suspicion_bounds = suspicion_bounds
        self._counts: Counter[Status] = Counter({self_member.status: 1})
        self._out = out
        self._counters = counters
        self._on_refute = on_refute
        self._sender: bytes | None = None

    # --- views ----------------------------------------------------------------------------------

    @property
    def me(self) -> Member:
        return self._members[self.self_id]

    def get(self, node: bytes) -> Member | None:
        return self._members.get(node)

    def __getitem__(self, node: bytes) -> Member:
        return self._members[node]

    def __contains__(self, node: object) -> bool:
        return node in self._members

    def members(self) -> list[Member]:
        return list(self._members.values())

    def count(self, *statuses: Status) -> int:
        return sum(self._counts[s] for s in statuses)

    def num_live(self) -> int:
        return self._counts[Status.ALIVE] + self._counts[Status.SUSPECT]

    @property
    def size_bytes(self) -> int:
        """Encoded size (upper bound) of every member record held."""
        return self._bytes

    @property
    def unverified(self) -> int:
        """How many members never sent us anything themselves."""
        return len(self._unverified)

    def entries(self) -> list[SyncEntry]:
        return [
            SyncEntry(m.node, m.incarnation, m.status, m.address, m.meta)
            for m in self._members.values()
        ]

    def piggyback(self, to: bytes, room: int | None = None) -> tuple[Update, ...]:
        """News to attach to a message for ``to``: first what we hold against it (Lifeguard's
        buddy system, so it can refute at once), then queued news; at most ``room`` bytes
        (default: the message budget less a message's own fields)."""
        extra: list[Update] = []
        member = self._members.get(to)
        if member is not None and member.status is Status.SUSPECT:
            extra.append(SuspectUpdate(to, member.incarnation, self.self_id))
        elif member is not None and member.status is Status.DEAD:
            extra.append(DeadUpdate(to, member.incarnation, self.self_id))
        limit = retransmit_limit(self.config.retransmit_mult, self.num_live())
        budget = self.config.max_piggyback - len(extra)
        if room is None:
            room = self.config.max_message_bytes - MESSAGE_OVERHEAD
        room -= sum(update_size(u) for u in extra)
        taken = self.queue.take(budget, limit, skip=to if extra else None, max_bytes=room)
        return (*extra, *taken)

    # --- news -----------------------------------------------------------------------------------

    def apply(self, update: Update, now: float, sender: bytes | None = None) -> None:
        """Apply news that ``sender`` passed on (None: this node's own conclusion)."""
        if not self._plausible(update.node, update.incarnation, sender):
            return
        self._sender = sender
        if isinstance(update, AliveUpdate):
            self._on_alive(update, now)
        elif isinstance(update, SuspectUpdate):
            self._on_suspect(update, now)
        else:
            self._on_dead(update, now)

    def merge_entry(self, sender: bytes, entry: SyncEntry, now: float) -> None:
        """Apply one entry of ``sender``'s full state."""
        if not self._plausible(entry.node, entry.incarnation, sender):
            return
        self._sender = sender
        if entry.status is Status.ALIVE:
            self._on_alive(
                AliveUpdate(entry.node, entry.incarnation, entry.address, entry.meta), now
            )
        elif entry.status is Status.LEFT:
            self._on_dead(DeadUpdate(entry.node, entry.incarnation, entry.node), now)
        else:
            self._on_suspect(SuspectUpdate(entry.node, entry.incarnation, sender), now)

    def my_alive(self) -> AliveUpdate:
        me = self.me
        return AliveUpdate(me.node, me.incarnation, me.address, me.meta)

    def become(self, incarnation: int, address: Address, meta: Meta, now: float) -> None:
        """This node is alive at ``incarnation`` with this address and metadata: spread it."""
        self._set(self.self_id, Status.ALIVE, incarnation, address, meta, now)
        self.queue.queue(AliveUpdate(self.self_id, incarnation, address, meta))

    def leave(self, now: float) -> DeadUpdate:
        """Mark this node as departed; returns its leave message, also queued for gossip."""
        me = self.me
        update = DeadUpdate(self.self_id, me.incarnation, self.self_id)
        self.left = True
        self._set(self.self_id, Status.LEFT, me.incarnation, me.address, me.meta, now)
        self.suspicions.clear()
        self.queue = BroadcastQueue()
        self.queue.queue(update)
        return update

    def expire_suspicions(self, now: float) -> None:
        for node, suspicion in list(self.suspicions.items()):
            if now >= suspicion.deadline:
                del self.suspicions[node]
                self._counters["declared_dead"] += 1
                self._sender = None
                self._on_dead(DeadUpdate(node, self._members[node].incarnation, self.self_id), now)

    def reap(self, now: float) -> None:
        """Forget dead and departed members whose tombstones have expired, and members never
        heard from directly that we learnt of too long ago."""
        for member in list(self._members.values()):
            if member.status in GONE and now - member.since >= self.config.tombstone_time:
                self._forget(member.node)
        cfg = self.config
        # A real member is probed by us within one round of n - 1 probe intervals; leave room
        # for several rounds, stretched by our own local health.
        ttl = max(cfg.unverified_member_ttl, 3 * len(self._members) * cfg.probe_interval)
        for node, learnt in list(self._unverified.items()):
            if now - learnt < ttl:
                break  # oldest first
            self._counters["unverified_expired"] += 1
            self._forget(node)

    def heard_from(self, node: bytes) -> None:
        """``node`` sent us a message itself: it is not a rumour."""
        if self._unverified.pop(node, None) is None:
            return
        member = self._members[node]
        self._members[node] = replace(member, verified=True)
        self._out.append(
            MemberEvent(
                node,
                member.status,
                member.status,
                member.incarnation,
                member.address,
                member.meta,
                verified=True,
            )
        )

    def _plausible(self, node: bytes, incarnation: int, sender: bytes | None) -> bool:
        if sender is None or sender == node:
            return True  # our own conclusion, or a member speaking for itself
        current = self._members.get(node)
        if plausible_incarnation(incarnation, None if current is None else current.incarnation):
            return True
        self._counters["implausible_incarnations"] += 1
        return False

    def _admit(self, node: bytes, address: Address, meta: Meta) -> bool:
        """Room for a new member? Make some if it speaks for itself; refuse rumours."""
        cfg = self.config
        size = record_size(address, meta)
        direct = self._sender == node
        while len(self._members) >= cfg.max_members or self._bytes + size > cfg.max_table_bytes:
            if not direct or not self._unverified:
                self._counters["members_refused"] += 1
                return False
            self._counters["unverified_evicted"] += 1
            self._forget(next(iter(self._unverified)))
        if not direct and len(self._unverified) >= cfg.max_unverified_members:
            self._counters["members_refused"] += 1
            return False
        return True

    def _on_alive(self, update: AliveUpdate, now: float) -> None:
        if update.node == self.self_id:
            me = self.me
            conflicting = (update.address, update.meta) != (me.address, me.meta)
            if update.incarnation > me.incarnation or (
                update.incarnation == me.incarnation and conflicting
            ):
                self._refute(update.incarnation, now)
            return
        current = self._members.get(update.node)
        if current is not None and update.incarnation <= current.incarnation:
            return
        if current is None and not self._admit(update.node, update.address, update.meta):
            return
        self.suspicions.pop(update.node, None)
        self._set(update.node, Status.ALIVE, update.incarnation, update.address, update.meta, now)
        self.queue.queue(update)

    def _on_suspect(self, update: SuspectUpdate, now: float) -> None:
        if update.node == self.self_id:
            self._refute(update.incarnation, now)
            return
        current = self._members.get(update.node)
        if current is None or update.incarnation < current.incarnation or current.status in GONE:
            return
        if current.status is Status.SUSPECT:
            suspicion = self.suspicions.get(update.node)
            news = suspicion is not None and suspicion.confirm(update.source)
            if update.incarnation > current.incarnation:
                self._set(
                    update.node,
                    Status.SUSPECT,
                    update.incarnation,
                    current.address,
                    current.meta,
                    now,
                )
                news = True
            if news:
                self.queue.queue(update)
            return
        n = self.num_live()
        low, high = self._suspicion_bounds(update.node, n)
        k = confirmation_count(self.config.suspicion_mult, n)
        self.suspicions[update.node] = Suspicion(update.node, update.source, now, low, high, k)
        self._set(
            update.node, Status.SUSPECT, update.incarnation, current.address, current.meta, now
        )
        self.queue.queue(update)

    def _on_dead(self, update: DeadUpdate, now: float) -> None:
        if update.node == self.self_id:
            self._refute(update.incarnation, now)
            return
        current = self._members.get(update.node)
        if current is None or update.incarnation < current.incarnation:
            return
        status = Status.LEFT if update.left else Status.DEAD
        # A leave may still upgrade a "dead" (the member left while we suspected it).
        if current.status is Status.LEFT or current.status is status:
            return
        self.suspicions.pop(update.node, None)
        self._set(update.node, status, update.incarnation, current.address, current.meta, now)
        self.queue.queue(update)

    def _refute(self, incarnation: int, now: float) -> None:
        me = self.me
        if self.left:
            return
        if incarnation < me.incarnation:
            self.stale_self_news = True
            return
        self._counters["refutations"] += 1
        self._on_refute()
        self.become(min(incarnation + 1, MAX_INCARNATION), me.address, me.meta, now)

    def _set(
        self,
        node: bytes,
        status: Status,
        incarnation: int,
        address: Address,
        meta: Meta,
        now: float,
    ) -> None:
        old = self._members.get(node)
        since = now if old is None or old.status is not status else old.since
        verified = node == self.self_id or (old.verified if old else self._sender == node)
        self._members[node] = Member(node, status, incarnation, address, meta, since, verified)
        self._counts[status] += 1
        self._bytes += record_size(address, meta)
        if old is None:
            self.order.add(node)
            if not verified:
                self._unverified[node] = now
        else:
            self._counts[old.status] -= 1
            self._bytes -= record_size(old.address, old.meta)
        changed = (
            old is None
            or old.status is not status
            or (status is Status.ALIVE and (old.address, old.meta) != (address, meta))
            or (node == self.self_id and old.incarnation != incarnation)
        )
        if changed:
            old_status = None if old is None else old.status
            _log.debug(
                "member %s: %s -> %s at incarnation %d",
                short_id(node),
                old_status and old_status.name,
                status.name,
                incarnation,
            )
            event = MemberEvent(node, old_status, status, incarnation, address, meta, verified)
            self._out.append(event)

    def _forget(self, node: bytes) -> None:
        member = self._members.pop(node)
        self._counts[member.status] -= 1
        self._bytes -= record_size(member.address, member.meta)
        self._unverified.pop(node, None)
        self.order.remove(node)
        self.queue.discard(node)
        self.suspicions.pop(node, None)
        self._out.append(MemberForgotten(node))
