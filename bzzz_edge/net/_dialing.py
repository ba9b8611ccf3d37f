"""Which peer addresses the node keeps connections to, and where they came from. No I/O.

Addresses reach us from several sources, most of them other peers (membership news, mDNS),
so the book is cautious about what it accepts: only IP literals (never a name someone else
chose for us to resolve), one address per node (a newer one replaces the older), and a cap per
source (``wire.constants``), so a peer gossiping thousands of fake members or a flood of fake
mDNS services cannot take every dial slot. Static bootstrap addresses are kept for good; the
others are given up by the dialler when they never answer (``NetLimits.dial_give_up``).
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from dataclasses import dataclass

from ..wire.constants import DIAL_MDNS_MAX, DIAL_MDNS_PER_HOST, DIAL_RUMOUR_MAX
from ._events import Address

__all__ = ["DialBook", "Source"]


class Source(enum.Enum):
    BOOTSTRAP = "bootstrap"  # static config: kept for good
    PEER_TABLE = "peer-table"  # remembered from the last run
    MDNS = "mdns"
    MEMBERSHIP = "membership"  # members that spoke to us themselves
    RUMOUR = "rumour"  # members known only from what other members said
    JOIN = "join"  # asked for by the operator (``bzzz-edge join``)

    @property
    def persistent(self) -> bool:
        return self in (Source.BOOTSTRAP, Source.JOIN)

    @property
    def rank(self) -> int:
        """How much an address from this source is trusted; a higher one takes an entry over."""
        return _RANK[self]


_RANK = {Source.RUMOUR: 0, Source.PEER_TABLE: 0, Source.MDNS: 1, Source.MEMBERSHIP: 2,
         Source.BOOTSTRAP: 3, Source.JOIN: 3}


@dataclass(slots=True)
class _Entry:
    node: bytes | None
    source: Source


@dataclass(frozen=True, slots=True)
class Change:
    """What the dialler must do: start (``dial``) or stop dialling ``address``."""

    address: Address
    dial: bool
    node: bytes | None = None
    persistent: bool = False


class DialBook:
    """Args:
        max_per_source: most addresses from one source (mDNS: at most ``DIAL_MDNS_MAX``).
    """

    def __init__(self, own_node: bytes, *, max_per_source: int) -> None:
        self._own = own_node
        self._max = {source: max_per_source for source in Source}
        self._max[Source.MDNS] = min(max_per_source, DIAL_MDNS_MAX)
        self._max[Source.RUMOUR] = min(max_per_source, DIAL_RUMOUR_MAX)
        self._by_address: dict[Address, _Entry] = {}
        self._by_node: dict[bytes, Address] = {}
        self._per_source: Counter[Source] = Counter()
        self._mdns_hosts: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_address)

    def want(self, address: Address, source: Source, node: bytes | None = None) -> list[Change]:
        """Keep a connection to ``address`` (of ``node`` when known)."""
        # Names are resolved only when the operator gave them (config or ``bzzz-edge join``).
        if node == self._own or not _dialable(address[0], literal_only=not source.persistent):
            self.counters["address_refused"] += 1
            return []
        changes: list[Change] = []
        if node is not None:
            previous = self._by_node.get(node)
            if previous == address:
                return []
            if previous is not None:
                changes += self._drop(previous)
        entry = self._by_address.get(address)
        if entry is not None:
            if source.rank > entry.source.rank:  # e.g. mDNS found it, then membership
                if entry.source is Source.MDNS:
                    self._mdns_hosts[address[0]] -= 1
                self._per_source[entry.source] -= 1
                self._per_source[source] += 1
                entry.source = source
                if source.persistent:
                    changes.append(Change(address, True, node or entry.node, True))
            if node is not None:
                entry.node = node
                self._by_node[node] = address
            return changes
        if self._per_source[source] >= self._max[source] or (
                source is Source.MDNS and self._mdns_hosts[address[0]] >= DIAL_MDNS_PER_HOST):
            self.counters["want_refused"] += 1
            return changes
        if source is Source.MDNS:
            self._mdns_hosts[address[0]] += 1
        self._by_address[address] = _Entry(node, source)
        self._per_source[source] += 1
        if node is not None:
            self._by_node[node] = address
        return [*changes, Change(address, True, node, source.persistent)]

    def forget_node(self, node: bytes) -> list[Change]:
        """Stop dialling ``node`` (dead, left, forgotten)."""
        address = self._by_node.get(node)
        return [] if address is None else self._drop(address)

    def forget_address(self, address: Address, source: Source | None = None) -> list[Change]:
        """Stop dialling ``address`` (given up, or lost by ``source``) unless it is static."""
        entry = self._by_address.get(address)
        if entry is None or entry.source.persistent or (source and entry.source is not source):
            return []
        return self._drop(address)

    def address_of(self, node: bytes) -> Address | None:
        return self._by_node.get(node)

    def _drop(self, address: Address) -> list[Change]:
        entry = self._by_address.pop(address, None)
        if entry is None:
            return []
        self._per_source[entry.source] -= 1
        if entry.source is Source.MDNS:
            self._mdns_hosts[address[0]] -= 1
            if not self._mdns_hosts[address[0]]:
                del self._mdns_hosts[address[0]]
        if entry.node is not None and self._by_node.get(entry.node) == address:
            del self._by_node[entry.node]
        return [Change(address, False)]


def _dialable(host: str, *, literal_only: bool) -> bool:
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return not literal_only and bool(host)
