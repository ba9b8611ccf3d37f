"""What one node knows about the members, and the rules for accepting news about them. No I/O.

The rules are SWIM's, ordered by incarnation as in memberlist:

- alive at i replaces anything held at an incarnation below i;
- suspect at i replaces alive at i or below; about a member already suspect it is a
  confirmation (Lifeguard), which shortens the suspicion;
- dead at i replaces alive or suspect at i or below; a member's own dead message is a leave;
- news about this node itself that is not its own current alive state (suspect, dead, alive
  at a higher incarnation) is refuted by raising the incarnation above it;
- in a full-state exchange another node's "dead" counts only as "suspect", so the member gets
  a chance to refute before we act on a verdict we did not reach ourselves.

Every accepted piece of news is queued for dissemination, and every change the application
should see becomes a ``MemberEvent`` in the shared output list.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from bzzz_edge.membership._broadcast import BroadcastQueue
from bzzz_edge.membership._config import MembershipConfig, retransmit_limit, suspicion_timeout
from bzzz_edge.membership._events import Action, MemberEvent, MemberForgotten
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
    """One member as this node sees it; ``since`` is when its status last changed."""

    node: bytes
    status: Status
    incarnation: int
    address: Address
    meta: Meta
    since: float


class MemberTable:
    """The members, their suspicions, the news queue, and the probe order.

    Args:
        out: the core's output list; member events are appended to it.
        on_refute: called when this node refutes news about itself (a local-health signal).
    """

    def __init__(
        self,
        self_member: Member,
        config: MembershipConfig,
        order: ProbeOrder,
        out: list[Action],
        counters: Counter[str],
        on_refute: Callable[[], None],
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
        self._counts: Counter[Status] = Counter({self_member.status: 1})
        self._out = out
        self._counters = counters
        self._on_refute = on_refute

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

    def entries(self) -> tuple[SyncEntry, ...]:
        return tuple(
            SyncEntry(m.node, m.incarnation, m.status, m.address, m.meta)
            for m in self._members.values()
        )

    def piggyback(self, to: bytes) -> tuple[Update, ...]:
        """News to attach to a message for ``to``: first what we hold against it (Lifeguard's
        buddy system, so it can refute at once), then queued news."""
        extra: list[Update] = []
        member = self._members.get(to)
        if member is not None and member.status is Status.SUSPECT:
            extra.append(SuspectUpdate(to, member.incarnation, self.self_id))
        elif member is not None and member.status is Status.DEAD:
            extra.append(DeadUpdate(to, member.incarnation, self.self_id))
        limit = retransmit_limit(self.config.retransmit_mult, self.num_live())
        budget = self.config.max_piggyback - len(extra)
        return (*extra, *self.queue.take(budget, limit, skip=to if extra else None))

    # --- news -----------------------------------------------------------------------------------

    def apply(self, update: Update, now: float) -> None:
        if isinstance(update, AliveUpdate):
            self._on_alive(update, now)
        elif isinstance(update, SuspectUpdate):
            self._on_suspect(update, now)
        else:
            self._on_dead(update, now)

    def merge_entry(self, sender: bytes, entry: SyncEntry, now: float) -> None:
        """Apply one entry of ``sender``'s full state."""
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
                self._on_dead(DeadUpdate(node, self._members[node].incarnation, self.self_id), now)

    def reap(self, now: float) -> None:
        """Forget dead and departed members whose tombstones have expired."""
        for member in list(self._members.values()):
            if member.status in GONE and now - member.since >= self.config.tombstone_time:
                self._forget(member.node)

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
        cfg = self.config
        n = self.num_live()
        low = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        high = low * cfg.suspicion_max_timeout_mult
        k = confirmation_count(cfg.suspicion_mult, n)
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
        self._members[node] = Member(node, status, incarnation, address, meta, since)
        self._counts[status] += 1
        if old is None:
            self.order.add(node)
        else:
            self._counts[old.status] -= 1
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
                node.hex()[:16],
                old_status and old_status.name,
                status.name,
                incarnation,
            )
            self._out.append(MemberEvent(node, old_status, status, incarnation, address, meta))

    def _forget(self, node: bytes) -> None:
        member = self._members.pop(node)
        self._counts[member.status] -= 1
        self.order.remove(node)
        self.queue.discard(node)
        self.suspicions.pop(node, None)
        self._out.append(MemberForgotten(node))
