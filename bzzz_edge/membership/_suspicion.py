"""Suspicion timers with Lifeguard's confirmations (as in memberlist's suspicion.go). No I/O.

A suspicion starts at its maximum timeout and shrinks towards the minimum, logarithmically, as
other members independently report the same suspicion: each independent report makes a false
alarm less likely, so the cluster can afford to act sooner. Here a suspicion is a plain record
with a deadline; the core checks deadlines in ``tick`` instead of owning timers.
"""

from __future__ import annotations

import math

__all__ = ["Suspicion", "confirmation_count", "suspicion_deadline"]


def suspicion_deadline(
    start: float, min_timeout: float, max_timeout: float, k: int, confirmations: int
) -> float:
    """When a suspicion started at ``start`` with ``confirmations`` of ``k`` expected expires.

    With no expected confirmations (``k < 1``, a tiny cluster) the minimum applies at once.
    """
    if k < 1:
        return start + min_timeout
    fraction = math.log(confirmations + 1) / math.log(k + 1)
    timeout = max(min_timeout, max_timeout - (max_timeout - min_timeout) * fraction)
    return start + timeout


def confirmation_count(suspicion_mult: int, n: int) -> int:
    """How many independent confirmations shrink a suspicion fully (memberlist: mult - 2).

    In a cluster too small to produce that many, none are expected and the minimum applies.
    """
    k = suspicion_mult - 2
    return 0 if n - 2 < k else max(k, 0)


class Suspicion:
    """The suspicion of one member: who reported it and when it expires."""

    __slots__ = ("_confirmers", "_k", "_max", "_min", "_start", "deadline", "node")

    def __init__(
        self,
        node: bytes,
        source: bytes,
        start: float,
        min_timeout: float,
        max_timeout: float,
        k: int,
    ) -> None:
        self.node = node
        self._start = start
        self._min = min_timeout
        self._max = max(max_timeout, min_timeout)
        self._k = k
        # The first reporter is the suspicion itself, not a confirmation of it.
        self._confirmers: set[bytes] = {source}
        self.deadline = suspicion_deadline(start, self._min, self._max, k, 0)

    @property
    def confirmations(self) -> int:
        return len(self._confirmers) - 1

    def confirm(self, source: bytes) -> bool:
        """Count an independent report by ``source``; True if it was new and counted."""
        if self._k < 1 or self.confirmations >= self._k or source in self._confirmers:
            return False
        self._confirmers.add(source)
        self.deadline = suspicion_deadline(
            self._start, self._min, self._max, self._k, self.confirmations
        )
        return True
