"""The pub/sub benchmark's workload, shared by bzzz-edge and py-libp2p runs (stdlib + trio).

A schedule is a list of steps ``(rate, seconds)``. In step ``s`` message ``k`` (``0 <= k <
rate * seconds``) is due at ``start + k / rate`` and is published by node ``k % nodes``: the
load is spread over every node. Its 256-byte body starts with ``(step, k, publish time in ns)``
so that any receiver, in any process on this machine, can tell its latency (CLOCK_REALTIME is
one clock for every process). A message is "delivered to all" when every node but its
publisher delivered it; its latency is the last of those deliveries minus its publish time.
"""

from __future__ import annotations

import math
import os
import statistics
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

SIZE = 256
_HEAD = struct.Struct(">IQQ")
_PAD = os.urandom(SIZE - _HEAD.size)  # incompressible, like a signed claim


def body(step: int, k: int) -> bytes:
    return _HEAD.pack(step, k, time.time_ns()) + _PAD


def parse(data: bytes) -> tuple[int, int, int]:
    """``(step, k, publish time ns)`` of a body."""
    return _HEAD.unpack_from(data)


Publish = Callable[[bytes], Awaitable[None]]


async def publish_share(publish: Publish, index: int, nodes: int, schedule: list[list[float]],
                        start: float, published: dict[tuple[int, int], int],
                        cpu_marks: list[float] | None = None) -> None:
    """Publish node ``index``'s share of ``schedule`` from wall time ``start``; record each
    message's publish time in ``published`` and, in ``cpu_marks``, this process's CPU seconds
    at each step's start and end."""
    offset = start - time.time() + trio.current_time()  # wall start on trio's clock
    step_start = offset
    for step, (rate, seconds) in enumerate(schedule):
        total = int(rate * seconds)
        await trio.sleep_until(step_start)
        if cpu_marks is not None:
            cpu_marks.append(time.process_time())
        k = index
        while k < total:
            due = step_start + k / rate
            now = trio.current_time()
            if now > step_start + seconds + GAP / 2:
                break  # far behind: the rest of the step counts as lost (steps stay in step)
            if due > now:
                await trio.sleep_until(due)
            else:  # behind schedule: still let the receivers run between messages
                await trio.lowlevel.checkpoint()
            data = body(step, k)
            published[(step, k)] = parse(data)[2]
            await publish(data)
            k += nodes
        await trio.sleep_until(step_start + seconds)
        if cpu_marks is not None:
            cpu_marks.append(time.process_time())
        step_start += seconds + GAP


GAP = 1.0  # seconds between steps, to drain


def schedule_length(schedule: list[list[float]]) -> float:
    return sum(seconds + GAP for _, seconds in schedule)


def summarize(schedule: list[list[float]], nodes: int,
              published: dict[tuple[int, int], int],
              received: list[list[tuple[int, int, int]]]) -> list[dict[str, Any]]:
    """Per step: messages, delivered-to-all share, latency p50/p99 (ms), delivered-to-all rate.

    Args:
        published: ``(step, k) -> publish ns``.
        received: per node, ``(step, k, receive ns)`` of each delivery of another's message.
    """
    last: dict[tuple[int, int], int] = {}
    count: dict[tuple[int, int], int] = {}
    for deliveries in received:
        for step, k, at in deliveries:
            key = (step, k)
            count[key] = count.get(key, 0) + 1
            if at > last.get(key, 0):
                last[key] = at
    out = []
    for step, (rate, seconds) in enumerate(schedule):
        keys = [key for key in published if key[0] == step]
        complete = [key for key in keys if count.get(key, 0) >= nodes - 1]
        latencies = sorted((last[key] - published[key]) / 1e6 for key in complete)
        # A publisher that cannot keep up stretches its step: the rate is what was delivered
        # to all over the time it really took, first publication to last delivery.
        span = (max(last[key] for key in complete) - min(published[key] for key in keys)) / 1e9 \
            if complete else math.inf
        out.append({
            "rate": rate, "seconds": seconds, "messages": len(keys),
            "delivered_all": len(complete) / int(rate * seconds),
            "p50_ms": _quantile(latencies, 0.5), "p99_ms": _quantile(latencies, 0.99),
            "rate_all": len(complete) / max(span, seconds),
        })
    return out


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(q * len(values)))]


def best_step(steps: list[dict[str, Any]], low_p99: float) -> dict[str, Any] | None:
    """The highest rate delivered to all (after the first step, the low-rate one) with no loss,
    at 90 % of the offered rate at least, and a p99 within three times the low-rate p99 (at
    least 50 ms): before loss or latency blow up. None when none."""
    bound = max(50.0, 3 * low_p99) if not math.isnan(low_p99) else 50.0
    best = None
    for row in steps[1:]:
        if row["delivered_all"] == 1.0 and row["p99_ms"] <= bound \
                and row["rate_all"] >= 0.9 * row["rate"]:
            best = row
        else:
            break
    return best


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan
