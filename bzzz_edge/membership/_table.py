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

The records themselves, and their bounds, are ``_roster``'s. Every accepted piece of news is
queued for dissemination, and every change the application should see becomes a
``MemberEvent`` in the shared output list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from bzzz_edge.membership._broadcast import BroadcastQueue
from bzzz_edge.membership._config import MembershipConfig, retransmit_limit
from bzzz_edge.membership._events import Action
from bzzz_edge.membership._limits import MESSAGE_OVERHEAD, plausible_incarnation, update_size
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
from bzzz_edge.membership._roster import GONE, LIVE, Member, Roster
from bzzz_edge.membership._suspicion import Suspicion, confirmation_count

__all__ = ["GONE", "LIVE", "Member", "MemberTable"]


class MemberTable(Roster):
    """The members (``Roster``) and SWIM's rules for accepting news about them.

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
        super().__init__(self_member, config, order, out, counters)
        self.left = False
        # Set when news about an older life of this node arrives; the core, which knows who
        # sent it, resets it before applying a message and answers the sender if it is set.
        self.stale_self_news = False
        self._suspicion_bounds = suspicion_bounds
        self._on_refute = on_refute

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

    def _plausible(self, node: bytes, incarnation: int, sender: bytes | None) -> bool:
        if sender is None or sender == node:
            return True  # our own conclusion, or a member speaking for itself
        current = self._members.get(node)
        if plausible_incarnation(incarnation, None if current is None else current.incarnation):
            return True
        self._counters["implausible_incarnations"] += 1
        return False

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
