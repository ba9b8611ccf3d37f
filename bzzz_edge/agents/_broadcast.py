"""When this node broadcasts its availability and when it carries the roles and capabilities,
and when it asks for the ones it lacks. No I/O.

- Every ``interval`` seconds, and on change of what it says of itself beyond load and memory
  (name, capacity, tasks held, roles or capabilities), at most once per ``min_gap`` seconds.
- The roles (with their patterns) and capabilities ride along only when they changed since the
  last broadcast, when a node asked for them (a ``want`` naming this node), or when a node
  joined: a newcomer learns every node's within about ``settle`` seconds of being seen alive
  (the wait lets its gossip subscription reach this node), not ``interval`` later.
- Every availability names its profile's digest; a node holding another digest for it (or
  none: the broadcast was lost, it joined after) asks with a ``want``. Wants for a node go out
  ``want_delay`` seconds after it is seen lacking, then at doubling intervals up to
  ``interval``, until its profile arrives; wants answered are rate-limited by ``min_gap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Broadcaster", "Local", "WantTimer"]

MIN_GAP: Final = 1.0
SETTLE: Final = 0.5
WANT_DELAY: Final = 1.0


@dataclass(frozen=True, slots=True)
class Local:
    """What this node says of itself, beyond load and memory (those change all the time)."""

    name: str
    capacity: int
    held: int
    tasks: tuple[str, ...]
    profile: str


class Broadcaster:
    """This node's broadcast schedule. ``due(now)`` says whether to broadcast now; after a
    broadcast, ``sent(local, now)``; ``next_deadline()`` is when to look again."""

    def __init__(self, interval: float, now: float, *, min_gap: float = MIN_GAP,
                 settle: float = SETTLE) -> None:
        self.interval = interval
        self.min_gap = min_gap
        self.settle = settle
        self._sent_at: float | None = None
        self._last: Local | None = None
        self._due = now  # the first broadcast at once
        self.with_profile = True  # the next broadcast carries roles and capabilities

    def set_interval(self, interval: float, now: float) -> None:
        if interval != self.interval:
            self.interval = interval
            if self._sent_at is not None:
                self._due = min(self._due, max(now, self._sent_at + interval))

    def local(self, state: Local, now: float) -> None:
        """This node's state as it is now: a change brings the next broadcast forward."""
        last = self._last
        if last is None or state == last:
            return
        if state.profile != last.profile:
            self.with_profile = True
        self._soon(now, 0.0)

    def wanted(self, now: float) -> None:
        """A node asked for our roles and capabilities."""
        self.with_profile = True
        self._soon(now, 0.0)

    def newcomer(self, now: float) -> None:
        """A node joined (or came back): it hears our roles and capabilities shortly."""
        self.with_profile = True
        self._soon(now, self.settle)

    def _soon(self, now: float, wait: float) -> None:
        earliest = now + wait if self._sent_at is None else \
            max(now + wait, self._sent_at + self.min_gap)
        self._due = min(self._due, earliest)

    def due(self, now: float) -> bool:
        return now >= self._due

    def sent(self, state: Local, now: float) -> None:
        self._sent_at = now
        self._last = state
        self._due = now + self.interval
        self.with_profile = False

    def next_deadline(self) -> float:
        return self._due


class WantTimer:
    """When to ask for each node's roles and capabilities again (see the module docstring)."""

    def __init__(self, *, delay: float = WANT_DELAY, ceiling: float = 30.0,
                 max_nodes: int = 1024) -> None:
        self.delay = delay
        self.ceiling = ceiling
        self.max_nodes = max_nodes
        self._next: dict[bytes, tuple[float, float]] = {}  # node: (when, backoff)

    def due(self, lacking: list[bytes], now: float) -> list[bytes]:
        """Of the nodes ``lacking`` now, those to ask for now; forgets the others."""
        keep = set(lacking)
        for node in [n for n in self._next if n not in keep]:
            del self._next[node]
        out = []
        for node in lacking:
            when = self._next.get(node)
            if when is None:
                if len(self._next) < self.max_nodes:
                    self._next[node] = (now + self.delay, self.delay)
            elif now >= when[0]:
                backoff = min(when[1] * 2, self.ceiling)
                self._next[node] = (now + backoff, backoff)
                out.append(node)
        return out

    def next_deadline(self) -> float | None:
        return min((w for w, _ in self._next.values()), default=None)
