"""Who may connect: strikes and bans per identity and per IP, and handshake throttling. No I/O.

Time is passed in. A peer's offences (protocol errors, bad or flooding gossip, floods of
duplicates) are strikes that last ``strike_ttl`` seconds, counted against its node ID and its
IP alike, so neither a reconnection nor a fresh identity from the same address starts clean.
``max_strikes`` strikes ban the identity, for a period that doubles with each ban (up to
``ban_max``); an IP whose identities collected twice that many strikes is banned as a whole.
An IP that fails many handshakes in a row (a wrong key, garbage) is throttled before any
handshake work: while throttled, its new connections are closed at once.

Loopback addresses are never banned as a whole: every local node shares them, and a process
on this machine that misbehaves is refused by its identity instead.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TypeVar

from ..wire.constants import (
    BAN_INITIAL,
    BAN_MAX,
    GUARD_MAX_TRACKED,
    HANDSHAKE_FAILURE_WINDOW,
    HANDSHAKE_FAILURES,
    HANDSHAKE_THROTTLE,
    IP_STRIKES_FACTOR,
    MAX_STRIKES,
    STRIKE_TTL,
)

__all__ = ["COUNTERS", "Guard", "GuardLimits"]

#: What the guard counts.
COUNTERS = ("strikes", "bans", "ip_bans", "pruned", "handshakes_throttled", "ips_throttled")

K = TypeVar("K", bytes, str)


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The guard's policy; the defaults are ``wire.constants`` (tests pass smaller ones)."""

    max_strikes: int = MAX_STRIKES
    strike_ttl: float = STRIKE_TTL
    ban_initial: float = BAN_INITIAL
    ban_max: float = BAN_MAX
    handshake_failures: int = HANDSHAKE_FAILURES  # failed handshakes from one IP in the window...
    handshake_window: float = HANDSHAKE_FAILURE_WINDOW
    throttle: float = HANDSHAKE_THROTTLE  # ...close its new connections this long (doubling)
    max_tracked: int = GUARD_MAX_TRACKED  # identities and IPs remembered, at most


@dataclass(slots=True)
class _Record:
    strikes: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0
    ban_length: float = 0.0


class Guard:
    """Strikes, bans and handshake throttles; every table bounded by ``max_tracked``."""

    def __init__(self, limits: GuardLimits | None = None) -> None:
        self.limits = limits or GuardLimits()
        self._ids: dict[bytes, _Record] = {}
        self._ips: dict[str, _Record] = {}
        self._failures: dict[str, deque[float]] = {}
        self._throttled: dict[str, tuple[float, float]] = {}  # ip -> (until, length)
        # Every counter exists from the start, at zero, so /metrics shows it before it moves.
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))

    # --- strikes and bans ---------------------------------------------------------------------

    def strike(self, peer: bytes, ip: str, now: float, *, weight: int = 1) -> bool:
        """Record an offence; True when the peer is now banned (disconnect it)."""
        self.counters["strikes"] += weight
        banned = False
        record = self._record(self._ids, peer, now)
        if self._add_strikes(record, now, weight, self.limits.max_strikes):
            self._ban(record, now)
            self.counters["bans"] += 1
            banned = True
        if not _is_loopback(ip):
            ip_record = self._record(self._ips, ip, now)
            ip_limit = IP_STRIKES_FACTOR * self.limits.max_strikes
            if self._add_strikes(ip_record, now, weight, ip_limit):
                self._ban(ip_record, now)
                self.counters["ip_bans"] += 1
                banned = True
        return banned

    def ban(self, peer: bytes, now: float) -> float:
        """Ban ``peer`` at once (a fatal protocol error); returns the ban's length."""
        record = self._record(self._ids, peer, now)
        self.counters["bans"] += 1
        return self._ban(record, now)

    def strikes(self, peer: bytes, now: float) -> int:
        record = self._ids.get(peer)
        return 0 if record is None else len(self._expire(record, now))

    def refused(self, peer: bytes | None, ip: str, now: float) -> bool:
        """Whether a connection from ``peer`` (if known yet) at ``ip`` must be refused."""
        if peer is not None:
            record = self._ids.get(peer)
            if record is not None and now < record.banned_until:
                return True
        record = self._ips.get(ip)
        return record is not None and now < record.banned_until

    def banned_until(self, peer: bytes) -> float:
        record = self._ids.get(peer)
        return 0.0 if record is None else record.banned_until

    def _add_strikes(self, record: _Record, now: float, weight: int, limit: int) -> bool:
        strikes = self._expire(record, now)
        strikes.extend([now] * min(weight, limit))
        if len(strikes) >= limit:
            strikes.clear()
            return True
        return False

    def _expire(self, record: _Record, now: float) -> deque[float]:
        while record.strikes and record.strikes[0] + self.limits.strike_ttl < now:
            record.strikes.popleft()
        return record.strikes

    def _ban(self, record: _Record, now: float) -> float:
        if record.banned_until + self.limits.strike_ttl < now:
            record.ban_length = 0.0  # long since the last ban: start over
        record.ban_length = min(max(record.ban_length * 2, self.limits.ban_initial),
                                self.limits.ban_max)
        record.banned_until = now + record.ban_length
        return record.ban_length

    def _record(self, table: dict[K, _Record], key: K, now: float) -> _Record:
        record = table.get(key)
        if record is None:
            if len(table) >= self.limits.max_tracked:
                self._prune(table, now)
            record = table[key] = _Record()
        return record

    def _prune(self, table: dict[K, _Record], now: float) -> None:
        """Forget quiet records; if all are busy, the oldest half (a flood of identities)."""
        stale = [k for k, r in table.items()
                 if not self._expire(r, now) and r.banned_until < now]
        if len(stale) < len(table) // 2:
            stale = list(table)[: len(table) // 2]
        for key in stale:
            del table[key]
        self.counters["pruned"] += len(stale)

    # --- handshakes ---------------------------------------------------------------------------

    def handshake_allowed(self, ip: str, now: float) -> bool:
        """False while ``ip`` is throttled for failed handshakes (close before any crypto)."""
        until = self._throttled.get(ip, (0.0, 0.0))[0]
        if now < until:
            self.counters["handshakes_throttled"] += 1
            return False
        return True

    def handshake_failed(self, ip: str, now: float) -> None:
        failures = self._failures.get(ip)
        if failures is None:
            if len(self._failures) >= self.limits.max_tracked:
                self._failures.clear()
            failures = self._failures[ip] = deque()
        failures.append(now)
        while failures[0] + self.limits.handshake_window < now:
            failures.popleft()
        if len(failures) >= self.limits.handshake_failures:
            failures.clear()
            _, length = self._throttled.get(ip, (0.0, 0.0))
            length = min(max(length * 2, self.limits.throttle), self.limits.ban_max)
            if len(self._throttled) >= self.limits.max_tracked:
                self._throttled = {k: v for k, v in self._throttled.items() if v[0] > now}
            self._throttled[ip] = (now + length, length)
            self.counters["ips_throttled"] += 1

    def handshake_succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False
