"""The directory of agents: per node its latest availability, roles, capabilities, when it was
last heard and what membership says of it. No I/O.

Bounds, against a peer holding the network key: one entry per node ID, the node being the
gossip message's signed origin (a message cannot speak for another node); every field of an
entry is bounded by the message checks (``_messages``); at most ``max_entries`` entries in
all: a newcomer past that takes the place of a node membership holds dead or left (or, failing
that, of one it does not hold alive, heard longest ago), else it is refused and counted; the
member statuses mirrored from membership are bounded the same way. A message older than the
entry's (its origin's sequence number) is ignored.

Entries of nodes membership holds dead or left are marked so and forgotten ``forget_after``
seconds after that (or after their last message, if later); so is a node membership does not
hold alive (suspect, or never named) that was silent that long.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from ._messages import Availability

__all__ = ["DEFAULT_FORGET_AFTER", "DEFAULT_MAX_ENTRIES", "Directory", "Entry"]

DEFAULT_MAX_ENTRIES: Final = 1024
DEFAULT_FORGET_AFTER: Final = 600.0
_GONE: Final = frozenset({"dead", "left"})


@dataclass(frozen=True, slots=True)
class Entry:
    """What this node knows of one agent. ``roles``/``capabilities`` None: not heard yet."""

    node: bytes
    availability: Availability
    seq: int  # the origin's sequence number of the message it came in
    sent_ms: int  # the origin's wall clock when it sent it
    heard: float  # this node's clock when it arrived
    roles: Mapping[str, tuple[str, ...]] | None
    capabilities: frozenset[str] | None
    profile: str | None  # the digest ``roles`` and ``capabilities`` match, once heard
    status: str = "alive"  # membership's word: alive, suspect, dead, left, unknown
    status_since: float = 0.0

    @property
    def profile_known(self) -> bool:
        """Whether the roles and capabilities held are the ones the latest availability names."""
        return self.profile is not None and self.profile == self.availability.profile


class Directory:
    """Every agent this node heard of (see the module docstring)."""

    def __init__(self, me: bytes, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 forget_after: float = DEFAULT_FORGET_AFTER) -> None:
        self.me = me
        self.max_entries = max_entries
        self.forget_after = forget_after
        self.entries: dict[bytes, Entry] = {}
        self._members: dict[bytes, tuple[str, float]] = {}  # membership's status, since
        self.counters: Counter[str] = Counter()

    # --- what arrives -------------------------------------------------------------------------

    def heard(self, node: bytes, seq: int, sent_ms: int, a: Availability, now: float) -> bool:
        """Take ``node``'s availability (from a message it signed); False when not taken
        (older than what is held, or the directory is full)."""
        old = self.entries.get(node)
        if old is not None and seq <= old.seq:
            self.counters["stale"] += 1
            return False
        if old is None and len(self.entries) >= self.max_entries and not self._evict(now):
            self.counters["refused_full"] += 1
            return False
        roles, capabilities, profile = (None, None, None) if old is None else \
            (old.roles, old.capabilities, old.profile)
        if a.roles is not None and a.capabilities is not None:
            roles, capabilities, profile = a.roles, a.capabilities, a.profile
        status, since = self._members.get(node, ("alive" if node == self.me else "unknown", now))
        self.entries[node] = Entry(node, a, seq, sent_ms, now, roles, capabilities, profile,
                                   status, since)
        self.counters["accepted"] += 1
        return True

    def member(self, node: bytes, status: str, now: float) -> None:
        """Membership says ``node`` is now ``status`` (alive, suspect, dead or left)."""
        if node == self.me:
            return
        old = self._members.get(node)
        if old is not None and old[0] == status:
            return
        if old is None and len(self._members) >= self.max_entries:
            self._forget_members(now)
            if len(self._members) >= self.max_entries:
                self.counters["members_dropped"] += 1
                return
        self._members[node] = (status, now)
        entry = self.entries.get(node)
        if entry is not None:
            self.entries[node] = replace(entry, status=status, status_since=now)

    def members(self, alive: Iterable[tuple[bytes, str]], now: float) -> None:
        """Membership's whole view (after missed events): every member and its status."""
        seen = set()
        for node, status in alive:
            seen.add(node)
            self.member(node, status, now)
        for node in [n for n in self._members if n not in seen]:
            del self._members[node]

    # --- time ---------------------------------------------------------------------------------

    def tick(self, now: float) -> list[bytes]:
        """Forget what is due; returns the nodes forgotten."""
        gone = [e.node for e in self.entries.values() if e.node != self.me
                and e.status != "alive"
                and now - max(e.heard, e.status_since) >= self.forget_after]
        for node in gone:
            del self.entries[node]
        self.counters["forgotten"] += len(gone)
        self._forget_members(now)
        return gone

    def _forget_members(self, now: float) -> None:
        for node in [n for n, (s, since) in self._members.items()
                     if s in _GONE and now - since >= self.forget_after]:
            del self._members[node]

    def _evict(self, now: float) -> bool:
        """Make room for a newcomer: a gone node first, else one not alive heard longest ago."""
        candidates = [e for e in self.entries.values() if e.node != self.me and e.status != "alive"]
        if not candidates:
            return False
        victim = min(candidates, key=lambda e: (e.status not in _GONE, e.heard))
        del self.entries[victim.node]
        self.counters["evicted"] += 1
        return True

    # --- views --------------------------------------------------------------------------------

    def lacking(self) -> list[bytes]:
        """Alive members (by membership) whose roles and capabilities this node lacks: never
        heard, or the profile held is not the one their latest availability names."""
        out = []
        for node, (status, _) in self._members.items():
            if status != "alive":
                continue
            entry = self.entries.get(node)
            if entry is None or not entry.profile_known:
                out.append(node)
        return out

    def alive_members(self) -> list[bytes]:
        return [n for n, (s, _) in self._members.items() if s == "alive"]
