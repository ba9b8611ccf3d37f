"""Inbound admission: who may open a connection now, and what is in flight per IP. No I/O.

Time is passed in. Before any handshake work, a new inbound connection is refused when the
manager is closing, its IP is banned or throttled (the guard's verdicts), or a limit is
reached: connections and handshakes in flight in total and per IP. The refusal is a counter
name (``REFUSALS``), so each cause is counted on its own.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from ._guard import Guard

__all__ = ["REFUSALS", "Admission"]

REFUSALS = ("refused_closing", "refused_banned_ip", "refused_throttled", "refused_limit",
            "refused_per_ip", "refused_handshakes")


class _Limits(Protocol):  # NetLimits (``_limits`` reads the open-file limit: not imported here)
    @property
    def max_connections(self) -> int: ...
    @property
    def max_handshakes(self) -> int: ...
    @property
    def max_per_ip(self) -> int: ...
    @property
    def max_handshakes_per_ip(self) -> int: ...


class Admission:
    """Inbound connections in flight per IP (handshaking or connected), and the refusals."""

    def __init__(self, limits: _Limits, guard: Guard) -> None:
        self._limits = limits
        self._guard = guard
        self._per_ip: Counter[str] = Counter()
        self._handshaking: Counter[str] = Counter()

    def refusal(self, ip: str, now: float, *, closing: bool) -> str:
        """Why a new inbound connection from ``ip`` is refused at once ('' if it is not)."""
        limits = self._limits
        if closing:
            return "refused_closing"
        if self._guard.refused(None, ip, now):
            return "refused_banned_ip"
        if not self._guard.handshake_allowed(ip, now):
            return "refused_throttled"
        if sum(self._per_ip.values()) >= limits.max_connections + limits.max_handshakes:
            return "refused_limit"
        if self._per_ip[ip] >= limits.max_per_ip:
            return "refused_per_ip"
        if sum(self._handshaking.values()) >= limits.max_handshakes \
                or self._handshaking[ip] >= limits.max_handshakes_per_ip:
            return "refused_handshakes"
        return ""

    def opened(self, ip: str) -> None:
        """An admitted connection from ``ip`` starts its handshake."""
        self._per_ip[ip] += 1
        self._handshaking[ip] += 1

    def handshake_ended(self, ip: str) -> None:
        """Its handshake is over (done or failed); the connection may still be open."""
        _release(self._handshaking, ip)

    def closed(self, ip: str) -> None:
        """The connection from ``ip`` is gone."""
        _release(self._per_ip, ip)


def _release(counts: Counter[str], ip: str) -> None:
    counts[ip] -= 1
    if not counts[ip]:
        del counts[ip]
