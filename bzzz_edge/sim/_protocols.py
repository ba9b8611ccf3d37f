"""What the simulator needs from a protocol core, and how a core is wired to the network. No I/O.

Any sans-IO core with ``handle(event, now)``, ``tick(now)`` and ``next_deadline()`` can be
simulated. A ``Wiring`` teaches the simulator the core's vocabulary: which actions are messages
to other nodes, how a delivered message becomes an event, and what event (if any) tells a core
that its connection to a peer dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["Core", "Outgoing", "Wiring"]

EventT_co = TypeVar("EventT_co", covariant=True)
ActionT_contra = TypeVar("ActionT_contra", contravariant=True)
EventT_contra = TypeVar("EventT_contra", contravariant=True)
ActionT_co = TypeVar("ActionT_co", covariant=True)


class Core(Protocol[EventT_contra, ActionT_co]):
    """A sans-IO protocol core: events and timers in, actions out."""

    def handle(self, event: EventT_contra, now: float) -> Sequence[ActionT_co]: ...

    def tick(self, now: float) -> Sequence[ActionT_co]: ...

    def next_deadline(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message a core wants delivered to node ``to``; ``payload`` is opaque to the network."""

    to: bytes
    payload: object


class Wiring(Protocol[EventT_co, ActionT_contra]):
    """Maps one kind of core's actions and events onto the simulated network."""

    def outgoing(self, action: ActionT_contra) -> Outgoing | None:
        """The message ``action`` sends, or None if it is not a send (it is then observed)."""
        ...

    def incoming(self, sender: bytes, payload: object) -> EventT_co:
        """The event that delivers ``payload`` from ``sender`` to a core."""
        ...

    def connection_lost(self, peer: bytes) -> EventT_co | None:
        """The event telling a core its connection to ``peer`` dropped, if the core has one."""
        ...
