"""The control parts the router gathers per peer, sent as few messages as the limits allow.
No I/O.

While one event or heartbeat is handled the router adds control parts per peer (subscriptions,
GRAFT/PRUNE, IHAVE, IWANT, the neighbour list); ``drain`` turns them into control messages,
split so that none exceeds what a receiver's decoder accepts (``MAX_CONTROL_TOPICS`` topics
per list, ``MAX_CONTROL_IDS`` IDs). Per peer and heartbeat it also keeps us within what the
peer will honour before it charges us with a flood: at most ``ihave_budget`` announced and
``iwant_budget`` requested IDs (half the configured per-peer limits, so two routers with the
same configuration never mistake each other for flooders); ``new_heartbeat`` refills both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from bzzz_edge.gossip._control import MAX_CONTROL_IDS, MAX_CONTROL_TOPICS, Control

__all__ = ["ControlBatch"]

_HALF_IDS = MAX_CONTROL_IDS // 2


@dataclass(slots=True)
class _Parts:
    subscriptions: list[tuple[str, bool]] = field(default_factory=list)
    graft: list[str] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)
    ihave: dict[str, list[bytes]] = field(default_factory=dict)
    iwant: list[bytes] = field(default_factory=list)
    neighbours: tuple[bytes, ...] | None = None


class ControlBatch:
    def __init__(self, *, ihave_budget: int, iwant_budget: int) -> None:
        self._parts: dict[bytes, _Parts] = {}
        self._ihave_budget = ihave_budget
        self._iwant_budget = iwant_budget
        self._ihave_used: dict[bytes, int] = {}
        self._iwant_used: dict[bytes, int] = {}

    def new_heartbeat(self) -> None:
        self._ihave_used.clear()
        self._iwant_used.clear()

    def iwant_room(self, peer: bytes) -> int:
        """How many more IDs we may ask ``peer`` for in this heartbeat."""
        return self._iwant_budget - self._iwant_used.get(peer, 0)

    def _get(self, peer: bytes) -> _Parts:
        parts = self._parts.get(peer)
        if parts is None:
            parts = self._parts[peer] = _Parts()
        return parts

    def add(self, peer: bytes, *, subscriptions: tuple[tuple[str, bool], ...] = (),
            graft: tuple[str, ...] = (), prune: tuple[str, ...] = (),
            neighbours: tuple[bytes, ...] | None = None) -> None:
        parts = self._get(peer)
        parts.subscriptions.extend(subscriptions)
        parts.graft.extend(graft)
        parts.prune.extend(prune)
        if neighbours is not None:
            parts.neighbours = neighbours

    def ihave(self, peer: bytes, topic: str, ids: list[bytes]) -> None:
        """Announce ``ids``, as many as the peer's budget for this heartbeat allows."""
        used = self._ihave_used.get(peer, 0)
        room = self._ihave_budget - used
        if room <= 0 or not ids:
            return
        ids = ids[:room]
        self._ihave_used[peer] = used + len(ids)
        self._get(peer).ihave.setdefault(topic, []).extend(ids)

    def iwant(self, peer: bytes, ids: list[bytes]) -> None:
        """Ask for ``ids`` (the caller keeps within ``iwant_room``)."""
        if ids:
            self._iwant_used[peer] = self._iwant_used.get(peer, 0) + len(ids)
            self._get(peer).iwant.extend(ids)

    def drop(self, peer: bytes) -> None:
        self._parts.pop(peer, None)

    def pending(self) -> bool:
        """Whether any part waits for ``drain`` (after most received messages, none)."""
        return bool(self._parts)

    def drain(self) -> Iterator[tuple[bytes, Control]]:
        parts, self._parts = self._parts, {}
        for peer, p in parts.items():
            for control in _split(p):
                yield peer, control


def _split(p: _Parts) -> Iterator[Control]:
    limit = MAX_CONTROL_TOPICS
    pieces = [(topic, tuple(ids[k:k + _HALF_IDS]))
              for topic, ids in p.ihave.items() for k in range(0, len(ids), _HALF_IDS)]
    subs, graft, prune, iwant = p.subscriptions, p.graft, p.prune, p.iwant
    neighbours = p.neighbours
    while True:
        taken: list[tuple[str, tuple[bytes, ...]]] = []
        count = 0
        while pieces and len(taken) < limit and count + len(pieces[0][1]) <= _HALF_IDS:
            count += len(pieces[0][1])
            taken.append(pieces.pop(0))
        control = Control(tuple(subs[:limit]), tuple(graft[:limit]), tuple(prune[:limit]),
                          tuple(taken), tuple(iwant[:_HALF_IDS]), neighbours)
        if not control:
            return
        yield control
        subs, graft, prune = subs[limit:], graft[limit:], prune[limit:]
        iwant, neighbours = iwant[_HALF_IDS:], None
