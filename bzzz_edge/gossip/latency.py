"""Delivery latency (origin's timestamp to our delivery) as fixed histogram buckets. No I/O.

Observed by the service for every delivery and read by the Prometheus collector when scraped,
so nothing is allocated per message. The origin's timestamp is its wall clock in milliseconds:
across machines the figure includes their clock offset (a negative one counts as zero), and
below a millisecond it is the resolution of the timestamp.
"""

from __future__ import annotations

import bisect

__all__ = ["BUCKETS", "LatencyHistogram"]

#: Upper bounds in seconds, for coordination that should take milliseconds.
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Counts per bucket (not cumulative), their sum, and how many were observed."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bound
        self.total = 0.0
        self.observed = 0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.observed += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``[(le, count of observations <= le)]`` including ``+Inf``, as Prometheus wants."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out
