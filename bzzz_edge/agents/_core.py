"""The agents protocol of one node: the directory, the broadcast schedule and the wants,
driven by events, returning what to publish. No I/O; time comes in as an argument.

Surface: ``handle(event, now)`` and ``tick(now)`` return a list of actions; ``next_deadline()``
says when ``tick`` has something to do. Events: ``Received`` (a message of the topic, from its
signed origin), ``MemberChanged`` and ``MembersResync`` (membership), ``Sampled`` (this node's
own state, read by the shell). Actions: ``Publish`` (bytes for the topic) and ``Rejected`` (a
peer's message refused, for the shell to log; it is counted here).

A node seen alive for the first time, or back from dead or left, is a newcomer: this node's
next broadcast, shortly, carries its roles and capabilities. Each origin may make this node
parse ``origin_rate`` messages a second (bursts of ``origin_burst``); the excess is dropped
unparsed and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..gossip import PeerBudget
from ..ids import format_node_id
from ._broadcast import Broadcaster, Local, WantTimer
from ._directory import DEFAULT_FORGET_AFTER, DEFAULT_MAX_ENTRIES, Directory
from ._messages import (
    MAX_MESSAGE_BYTES,
    Availability,
    Refused,
    Want,
    decode,
    encode_availability,
    encode_want,
)

__all__ = ["AgentsCore", "MemberChanged", "MembersResync", "Publish", "Received", "Rejected",
           "Sample", "Sampled"]

ORIGIN_RATE: Final = 4.0
ORIGIN_BURST: Final = 20.0
_BACK: Final = frozenset({None, "dead", "left"})


@dataclass(frozen=True, slots=True)
class Sample:
    """This node's state as the shell read it: what change detection looks at (``local``),
    and what is only reported (load, memory, CPUs, the wall clock in ms)."""

    local: Local
    roles: Mapping[str, tuple[str, ...]]
    capabilities: frozenset[str]
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    memory_percent: float = 0.0
    memory_available: int = 0
    cpus: int = 0
    wall_ms: int = 0


@dataclass(frozen=True, slots=True)
class Received:
    origin: bytes  # the gossip message's signed origin
    seq: int  # its sequence number
    sent_ms: int  # its timestamp (the origin's wall clock)
    data: bytes


@dataclass(frozen=True, slots=True)
class MemberChanged:
    node: bytes
    old: str | None  # None: never seen before
    new: str  # alive, suspect, dead, left


@dataclass(frozen=True, slots=True)
class MembersResync:
    members: tuple[tuple[bytes, str], ...]


@dataclass(frozen=True, slots=True)
class Sampled:
    sample: Sample
    interval: float


@dataclass(frozen=True, slots=True)
class Publish:
    data: bytes
    kind: str  # availability, want


@dataclass(frozen=True, slots=True)
class Rejected:
    origin: bytes
    reason: str  # the counter's name
    text: str


Event = Received | MemberChanged | MembersResync | Sampled
Action = Publish | Rejected


class AgentsCore:
    """See the module docstring."""

    def __init__(self, me: bytes, *, interval: float, now: float,
                 max_entries: int = DEFAULT_MAX_ENTRIES,
                 forget_after: float = DEFAULT_FORGET_AFTER,
                 origin_rate: float = ORIGIN_RATE, origin_burst: float = ORIGIN_BURST) -> None:
        self.me = me
        self.directory = Directory(me, max_entries=max_entries, forget_after=forget_after)
        self.broadcaster = Broadcaster(interval, now)
        self.wants = WantTimer(ceiling=interval, max_nodes=max_entries)
        self.counters: Counter[str] = Counter()
        self._budget = PeerBudget(rate=origin_rate, burst=origin_burst, max_peers=max_entries)
        self._sample: Sample | None = None
        self._own_seq = 0

    def counts(self) -> dict[str, int]:
        return {**self.directory.counters, **self.counters}

    # --- events -------------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, Received):
            return self._received(event, now)
        if isinstance(event, MemberChanged):
            self.directory.member(event.node, event.new, now)
            if event.node != self.me and event.new == "alive" and event.old in _BACK:
                self.broadcaster.newcomer(now)
        elif isinstance(event, MembersResync):
            self.directory.members(((n, s) for n, s in event.members if n != self.me), now)
        else:
            self.broadcaster.set_interval(event.interval, now)
            self.wants.ceiling = event.interval
            self.broadcaster.local(event.sample.local, now)
            self._sample = event.sample
        return []

    def _received(self, event: Received, now: float) -> list[Action]:
        if event.origin == self.me:  # our own, as gossip hands it back: applied when sent
            return []
        if not self._budget.spend(event.origin, now):
            return self._reject(event.origin, "refused_rate", "more messages than its budget")
        try:
            message = decode(event.data)
        except Refused as exc:
            return self._reject(event.origin, f"refused_{exc.reason.value}", str(exc))
        if isinstance(message, Want):
            self.counters["received_want"] += 1
            if self.me in message.nodes:
                self.counters["wants_for_us"] += 1
                self.broadcaster.wanted(now)
            return []
        self.counters["received_availability"] += 1
        self.directory.heard(event.origin, event.seq, event.sent_ms, message, now)
        return []

    def _reject(self, origin: bytes, reason: str, text: str) -> list[Action]:
        self.counters[reason] += 1
        return [Rejected(origin, reason, text)]

    # --- time ---------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        if self._sample is not None and self.broadcaster.due(now):
            out.append(self._broadcast(self._sample, now))
        wanted = self.wants.due(self.directory.lacking(), now)
        if wanted:
            self.counters["sent_want"] += 1
            out.append(Publish(encode_want(tuple(format_node_id(n) for n in wanted)), "want"))
        self.directory.tick(now)
        return out

    def next_deadline(self) -> float:
        deadline = self.broadcaster.next_deadline()
        wants = self.wants.next_deadline()
        return deadline if wants is None else min(deadline, wants)

    def _broadcast(self, s: Sample, now: float) -> Publish:
        profile = self.broadcaster.with_profile
        a = Availability(
            name=s.local.name, load=s.load, memory_percent=s.memory_percent,
            memory_available=s.memory_available, cpus=s.cpus, capacity=s.local.capacity,
            held=s.local.held, tasks=s.local.tasks, profile=s.local.profile,
            roles=s.roles if profile else None, capabilities=s.capabilities if profile else None)
        data = encode_availability(a)
        if len(data) > MAX_MESSAGE_BYTES:  # roles and patterns beyond what peers take
            self.counters["own_too_long"] += 1
            a = Availability(a.name, a.load, a.memory_percent, a.memory_available, a.cpus,
                             a.capacity, a.held, a.tasks, a.profile)
            data = encode_availability(a)
        self.broadcaster.sent(s.local, now)
        self.counters["sent_availability"] += 1
        self._own_seq += 1  # our own entry, as the others hear it
        self.directory.heard(self.me, self._own_seq, s.wall_ms, a, now)
        return Publish(data, "availability")
