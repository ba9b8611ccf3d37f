"""Latency statistics and their rendering for ``bzzz-edge bench``: percentiles, a summary per
mode, a terminal histogram. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "histogram", "percentile", "summarize"]

_BAR = "█"


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``samples``.

    Raises:
        ValueError: no samples, or ``q`` out of range.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} outside (0, 100]")
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """One mode's round times, in milliseconds."""

    rounds: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {"rounds": self.rounds, "p50_ms": round(self.p50_ms, 3),
                "p90_ms": round(self.p90_ms, 3), "p99_ms": round(self.p99_ms, 3),
                "max_ms": round(self.max_ms, 3), "min_ms": round(self.min_ms, 3),
                "mean_ms": round(self.mean_ms, 3)}

    def line(self) -> str:
        return (f"p50 {self.p50_ms:.1f} ms  p90 {self.p90_ms:.1f}  p99 {self.p99_ms:.1f}  "
                f"max {self.max_ms:.1f}  (min {self.min_ms:.1f}, mean {self.mean_ms:.1f}, "
                f"{self.rounds} rounds)")


def summarize(samples_ms: Sequence[float]) -> Summary:
    """The summary of ``samples_ms`` (at least one).

    Raises:
        ValueError: no samples.
    """
    if not samples_ms:
        raise ValueError("no samples")
    return Summary(len(samples_ms), percentile(samples_ms, 50), percentile(samples_ms, 90),
                   percentile(samples_ms, 99), max(samples_ms), min(samples_ms),
                   sum(samples_ms) / len(samples_ms))


def _edges(low: float, high: float, bins: int) -> list[float]:
    """Bin edges from ``low`` to ``high``: geometric when the range spans more than a factor of
    ten (latency tails), linear otherwise."""
    if high <= low:
        return [low, low + 1e-9]
    if low > 0 and high / low > 10:
        ratio = (high / low) ** (1 / bins)
        return [low * ratio ** i for i in range(bins)] + [high]
    step = (high - low) / bins
    return [low + step * i for i in range(bins)] + [high]


def histogram(samples_ms: Sequence[float], *, bins: int = 12, width: int = 40) -> list[str]:
    """Terminal lines of a histogram of ``samples_ms``: one a bin, ``from - to ms │bars count``.

    Raises:
        ValueError: no samples, or fewer than one bin or column.
    """
    if not samples_ms:
        raise ValueError("no samples")
    if bins < 1 or width < 1:
        raise ValueError("a histogram needs at least one bin and one column")
    edges = _edges(min(samples_ms), max(samples_ms), bins)
    counts = [0] * (len(edges) - 1)
    for value in samples_ms:
        slot = next((i for i in range(len(counts)) if value < edges[i + 1]), len(counts) - 1)
        counts[slot] += 1
    top = max(counts)
    lines = []
    for i, count in enumerate(counts):
        bar = _BAR * (round(count / top * width) if count else 0)
        if count and not bar:
            bar = "▏"
        lines.append(f"{edges[i]:8.1f} - {edges[i + 1]:8.1f} ms │{bar:<{width}} {count}")
    return lines
