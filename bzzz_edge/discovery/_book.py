"""Turns mDNS service changes into PeerFound/PeerLost events. No I/O, no clock.

zeroconf reports instance names appearing, changing and disappearing; resolving a name (TXT,
port, addresses) happens elsewhere and may finish late or out of order. The book gives every
change a generation number, so the result of a resolution that a newer change overtook is
dropped, and a PeerLost never comes before the PeerFound it cancels. One peer may be announced
under two names for a while (a renamed instance, a restarted node whose old records linger):
it is lost only when its last name goes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import DecodeError
from ._records import PeerFound, PeerLost, parse_txt

__all__ = ["DiscoveryEvent", "PeerBook", "Resolved"]

log = logging.getLogger(__name__)

_MAX_REMEMBERED = 1024  # foreign service names remembered (to count each once)

DiscoveryEvent = PeerFound | PeerLost


@dataclass(frozen=True, slots=True)
class Resolved:
    """What resolving one instance name gave: TXT properties, SRV port, addresses."""

    properties: Mapping[bytes, bytes | None]
    port: int | None
    ips: tuple[str, ...]


@dataclass(slots=True)
class _Entry:
    generation: int
    found: PeerFound | None = None


@dataclass(slots=True)
class PeerBook:
    """The instance names we know of, and what each currently announces."""

    own_id: bytes
    fingerprint: str
    ignored_other_network: int = 0  # distinct instance names announcing another network
    ignored_self: int = 0
    malformed: int = 0
    unresolved: int = 0
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _other_network_names: set[str] = field(default_factory=set)
    _next_generation: int = 0

    def changed(self, name: str) -> int:
        """A name was added or updated; returns the generation its resolution must carry."""
        self._next_generation += 1
        entry = self._entries.setdefault(name, _Entry(self._next_generation))
        entry.generation = self._next_generation
        return self._next_generation

    def removed(self, name: str) -> list[DiscoveryEvent]:
        """A name was withdrawn (goodbye or expiry)."""
        entry = self._entries.pop(name, None)
        self._other_network_names.discard(name)
        if entry is None or entry.found is None:
            return []
        return self._lost_unless_elsewhere(entry.found.peer_id)

    def resolved(self, name: str, generation: int, result: Resolved | None) -> list[DiscoveryEvent]:
        """The resolution started for ``generation`` finished (``None``: it timed out)."""
        entry = self._entries.get(name)
        if entry is None or entry.generation != generation:
            return []  # withdrawn or changed again meanwhile: a newer resolution decides
        if result is None:
            self.unresolved += 1
            log.debug("could not resolve mDNS service %s in time", name)
            return []
        try:
            announcement = parse_txt(result.properties)
            if result.port is None or not 0 < result.port < 65536 or not result.ips:
                raise DecodeError(f"no usable port ({result.port}) or no addresses")
        except DecodeError as exc:
            self.malformed += 1
            # A neighbour's garbage is reported once, loudly enough to notice, then quietly.
            level = logging.WARNING if self.malformed == 1 else logging.DEBUG
            log.log(level, "ignoring malformed mDNS service %s: %s", name, exc)
            return self._forget(entry)
        if announcement.node_id == self.own_id:
            self.ignored_self += 1
            return self._forget(entry)
        if announcement.fingerprint != self.fingerprint:
            if name not in self._other_network_names:
                if len(self._other_network_names) >= _MAX_REMEMBERED:
                    self._other_network_names.clear()
                self._other_network_names.add(name)
                self.ignored_other_network += 1
                # A foreign network on the LAN is worth saying once; after that, only counted.
                log.log(logging.INFO if self.ignored_other_network == 1 else logging.DEBUG,
                        "ignoring mDNS service %s of another network (further ones are "
                        "only counted)", name)
            return self._forget(entry)
        self._other_network_names.discard(name)
        found = PeerFound(
            peer_id=announcement.node_id,
            addresses=tuple((ip, result.port) for ip in result.ips),
            protocol_version=announcement.protocol_version,
            name=announcement.name,
        )
        if found == entry.found:
            return []
        events: list[DiscoveryEvent] = []
        if entry.found is not None and entry.found.peer_id != found.peer_id:
            events += self._forget(entry)
        entry.found = found
        return [*events, found]

    def peers(self) -> dict[bytes, PeerFound]:
        """The peers currently announced (one entry per peer, any of its names)."""
        return {e.found.peer_id: e.found for e in self._entries.values() if e.found is not None}

    def _forget(self, entry: _Entry) -> list[DiscoveryEvent]:
        if entry.found is None:
            return []
        peer_id, entry.found = entry.found.peer_id, None
        return self._lost_unless_elsewhere(peer_id)

    def _lost_unless_elsewhere(self, peer_id: bytes) -> list[DiscoveryEvent]:
        for entry in self._entries.values():
            if entry.found is not None and entry.found.peer_id == peer_id:
                # Still announced under another name: restate what that name says, since the
                # last PeerFound the consumer saw may have come from the name that went.
                return [entry.found]
        return [PeerLost(peer_id)]
