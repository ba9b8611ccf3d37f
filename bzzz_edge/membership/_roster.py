"""The member records one node holds, and the bounds on them. No I/O.

The storage half of the member table (``_table`` holds SWIM's rules for news and builds on
this): each member's record, counts by status, the byte size of every record held, and the
members never heard from directly.

The records are bounded: in members, in members never heard from directly (which are
forgotten after a while unless they speak up), and in bytes. A member that talks to us itself
displaces the oldest unverified one when the table is full; others' news about new members is
refused. Every change the application should see becomes a ``MemberEvent`` in the shared
output list; a member forgotten becomes a ``MemberForgotten``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace

from bzzz_edge.ids import short_id
from bzzz_edge.membership._broadcast import BroadcastQueue
from bzzz_edge.membership._config import MembershipConfig
from bzzz_edge.membership._events import Action, MemberEvent, MemberForgotten
from bzzz_edge.membership._limits import record_size
from bzzz_edge.membership._messages import Address, Meta, Status, SyncEntry
from bzzz_edge.membership._probe import ProbeOrder
from bzzz_edge.membership._suspicion import Suspicion

__all__ = ["GONE", "LIVE", "Member", "Roster"]

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


class Roster:
    """The members this node holds, with their suspicions, queued news and probe order (which
    forgetting a member clears), within the bounds of the configuration.

    Args:
        out: the core's output list; member events are appended to it.
        counters: the core's counters (refusals, evictions, expiries).
    """

    def __init__(
        self,
        self_member: Member,
        config: MembershipConfig,
        order: ProbeOrder,
        out: list[Action],
        counters: Counter[str],
    ) -> None:
        self.self_id = self_member.node
        self.config = config
        self.order = order
        self.queue = BroadcastQueue()
        self.suspicions: dict[bytes, Suspicion] = {}
        self._members: dict[bytes, Member] = {self_member.node: self_member}
        self._bytes = record_size(self_member.address, self_member.meta)
        # Members never heard from directly, by when we learnt of them (oldest first).
        self._unverified: dict[bytes, float] = {}
        self._counts: Counter[Status] = Counter({self_member.status: 1})
        self._out = out
        self._counters = counters
        # Who passed on the news being applied (None: our own conclusion); a member that
        # speaks for itself is verified, and may displace a rumour.
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
            if status is Status.ALIVE and old.status in GONE:
                # Back (a restart): probed next, so its round trip is measured again at once
                # (its timeout was backed off while it was failing) and a second crash soon
                # after is found as fast as the first.
                self.order.probe_next(node)
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
