"""Health checks: registration, periodic runs with timeouts, and the critical-failure rule.
Uses trio.

Each check is an async callable returning a short message (healthy) or raising ``CheckFailed``.
A runner task per check calls it every ``interval`` seconds, bounded by ``timeout``, and keeps
its last result. A critical check that keeps failing for longer than its grace period calls
``on_critical`` (the node turns that into a graceful shutdown with a non-zero exit code).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import trio

__all__ = ["Check", "CheckFailed", "CheckResult", "HealthRegistry", "disk_check", "memory_check"]

log = logging.getLogger(__name__)


class CheckFailed(Exception):
    """Raised by a check function to report an unhealthy state, with the reason."""


CheckFn = Callable[[], Awaitable[str]]


@dataclass(slots=True)
class CheckResult:
    status: str = "pending"  # pending | ok | failing
    message: str = "not run yet"
    last_run: float | None = None  # wall-clock time of the last run
    duration: float = 0.0
    failing_since: float | None = None  # trio time of the first failure in a row
    consecutive_failures: int = 0


@dataclass(slots=True)
class Check:
    name: str
    run: CheckFn
    interval: float
    timeout: float
    critical: bool = False
    grace_period: float = 0.0
    result: CheckResult = field(default_factory=CheckResult)


class HealthRegistry:
    """The node's checks and their latest results."""

    def __init__(self, on_critical: Callable[[Check], None]) -> None:
        self.checks: dict[str, Check] = {}
        self._on_critical = on_critical
        self._wakeups: dict[str, trio.Event] = {}

    def add(self, check: Check) -> None:
        if check.name in self.checks:
            raise ValueError(f"health check {check.name!r} is already registered")
        self.checks[check.name] = check

    def update(self, name: str, **settings: Any) -> None:
        """Change a check's interval, timeout or grace period (config reload) and rerun it."""
        check = self.checks[name]
        for key, value in settings.items():
            setattr(check, key, value)
        if name in self._wakeups:
            self._wakeups[name].set()

    @property
    def critical_failing(self) -> list[Check]:
        return [c for c in self.checks.values() if c.critical and c.result.status == "failing"]

    def summary(self) -> dict[str, Any]:
        """JSON-ready view of every check."""
        return {
            name: {
                "status": c.result.status,
                "critical": c.critical,
                "message": c.result.message,
                "last_run": c.result.last_run,
                "duration_ms": round(c.result.duration * 1000, 3),
                "consecutive_failures": c.result.consecutive_failures,
            }
            for name, c in self.checks.items()
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every check on its own schedule until cancelled; started after the first round."""
        async with trio.open_nursery() as nursery:
            for check in self.checks.values():
                await self.run_once(check)
            task_status.started()
            for check in self.checks.values():
                nursery.start_soon(self._loop, check)

    async def _loop(self, check: Check) -> None:
        while True:
            wakeup = self._wakeups[check.name] = trio.Event()
            with trio.move_on_after(check.interval):
                await wakeup.wait()
            await self.run_once(check)

    async def run_once(self, check: Check) -> None:
        result = check.result
        began = trio.current_time()
        message, ok = "", False
        with trio.move_on_after(check.timeout) as scope:
            try:
                message, ok = await check.run(), True
            except CheckFailed as exc:
                message = str(exc)
            except Exception as exc:  # a broken check is a failing check, not a dead node
                log.exception("health check %s raised", check.name)
                message = f"check raised {type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            message = f"timed out after {check.timeout:g}s"
        now = trio.current_time()
        result.duration, result.last_run, result.message = now - began, time.time(), message
        if ok:
            if result.status == "failing":
                log.info("health check %s recovered: %s", check.name, message)
            result.status, result.failing_since, result.consecutive_failures = "ok", None, 0
            return
        if result.status != "failing":
            log.warning("health check %s failing: %s", check.name, message)
            result.failing_since = now
        result.status = "failing"
        result.consecutive_failures += 1
        assert result.failing_since is not None
        if check.critical and now - result.failing_since >= check.grace_period:
            self._on_critical(check)


def memory_check(max_percent: Callable[[], float]) -> CheckFn:
    """System memory in use must stay under a (reloadable) percentage."""

    async def check() -> str:
        used = psutil.virtual_memory().percent
        rss = psutil.Process().memory_info().rss / 2**20
        if used > max_percent():
            raise CheckFailed(f"system memory {used:.1f}% used (limit {max_percent():g}%)")
        return f"system memory {used:.1f}% used; node RSS {rss:.1f} MiB"

    return check


def disk_check(path: Path, min_free_mb: Callable[[], int]) -> CheckFn:
    """The file system holding the data directory must keep some free space."""

    async def check() -> str:
        # A hung network file system must not stall the event loop: ask from a thread.
        usage = await trio.to_thread.run_sync(psutil.disk_usage, str(path), abandon_on_cancel=True)
        free_mb = usage.free / 2**20
        if free_mb < min_free_mb():
            raise CheckFailed(f"{free_mb:.0f} MiB free under {path} (minimum {min_free_mb()} MiB)")
        return f"{free_mb:.0f} MiB free under {path}"

    return check
