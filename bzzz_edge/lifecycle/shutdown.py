"""Graceful shutdown in phases, with per-component timeouts and a hard deadline. Uses trio.

Components register a stop coroutine with a phase, a priority (lower stops first) and a timeout.
When a shutdown is requested (signal, critical health failure, the application), the phases run
in order: pre-shutdown (stop taking work, tell peers we leave), shutdown (components), post-
shutdown (flush and close storage), cleanup. A stop that overruns its timeout is cut off and the
shutdown goes on; the exit code then says the shutdown was not clean. The hard deadline is kept
by a plain thread, so it holds even if the event loop itself is stuck.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from .exitcodes import ExitCode

__all__ = ["ExitCode", "Phase", "ShutdownManager"]

log = logging.getLogger(__name__)


class Phase(enum.IntEnum):
    PRE_SHUTDOWN = 1
    SHUTDOWN = 2
    POST_SHUTDOWN = 3
    CLEANUP = 4


StopFn = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Registration:
    name: str
    stop: StopFn
    phase: Phase
    priority: int
    timeout: float


def _hard_exit(code: ExitCode, message: str) -> None:
    """Leave now, from any thread, after saying why and flushing what we can."""
    log.critical("%s; exiting with code %d", message, int(code))
    for handler in logging.getLogger("bzzz_edge").handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(int(code))


class ShutdownManager:
    """Collects stop hooks and runs them in phase and priority order when asked."""

    def __init__(self, *, deadline: float, default_timeout: float) -> None:
        self.deadline = deadline
        self.default_timeout = default_timeout
        self._registrations: list[_Registration] = []
        self._requested = trio.Event()
        self.reason = ""
        self.exit_code = ExitCode.OK
        self._deadline_timer: threading.Timer | None = None

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def register(
        self,
        name: str,
        stop: StopFn,
        *,
        phase: Phase = Phase.SHUTDOWN,
        priority: int = 50,
        timeout: float | None = None,
    ) -> None:
        """Run ``stop`` in ``phase``; lower ``priority`` runs first; cut off after ``timeout``."""
        timeout = self.default_timeout if timeout is None else timeout
        self._registrations.append(_Registration(name, stop, phase, priority, timeout))

    async def start_service(
        self,
        nursery: trio.Nursery,
        name: str,
        run: Callable[..., Awaitable[None]],
        *,
        priority: int = 50,
        timeout: float | None = None,
    ) -> Any:
        """Start a long-running service in ``nursery``, in its own cancel scope, and register
        its stop (in the shutdown phase): cancelling that scope and waiting until it has ended.

        Returns what the service passed to ``task_status.started``.
        """
        scope = trio.CancelScope()
        done = trio.Event()

        async def supervised(*, task_status: trio.TaskStatus[Any]) -> None:
            try:
                with scope:
                    await run(task_status=task_status)
            finally:
                done.set()

        async def stop() -> None:
            scope.cancel()
            await done.wait()

        started = await nursery.start(supervised)
        self.register(name, stop, priority=priority, timeout=timeout)
        return started

    def request(self, reason: str, exit_code: ExitCode = ExitCode.OK) -> None:
        """Ask for a graceful shutdown; only the first request's reason and code count."""
        if self._requested.is_set():
            return
        self.reason, self.exit_code = reason, exit_code
        # A shutdown we did not ask for (a failing critical check) is an error worth seeing.
        level = logging.INFO if exit_code is ExitCode.OK else logging.ERROR
        log.log(level, "shutdown requested: %s", reason)
        self._requested.set()

    def force(self, reason: str) -> None:
        """Exit at once (a second signal)."""
        _hard_exit(ExitCode.FORCED, f"{reason} during shutdown: forcing exit")

    async def wait_requested(self) -> None:
        await self._requested.wait()

    def _start_deadline(self) -> None:
        timer = threading.Timer(
            self.deadline,
            _hard_exit,
            args=(ExitCode.DEADLINE, f"shutdown deadline of {self.deadline:g}s passed"),
        )
        timer.daemon = True
        timer.start()
        self._deadline_timer = timer

    def cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()

    async def execute(self) -> ExitCode:
        """Run every phase in order; returns the exit code the process should end with."""
        began = time.monotonic()
        self._start_deadline()
        for phase in Phase:
            entries = sorted(
                (r for r in self._registrations if r.phase == phase), key=lambda r: r.priority
            )
            log.info("shutdown phase %s (%d steps)", phase.name.lower().replace("_", "-"),
                     len(entries))
            for entry in entries:
                await self._stop_one(entry)
        elapsed = time.monotonic() - began
        log.info("shutdown complete in %.3fs (exit code %d)", elapsed, int(self.exit_code))
        return self.exit_code

    async def _stop_one(self, entry: _Registration) -> None:
        began = trio.current_time()
        with trio.move_on_after(entry.timeout) as scope:
            try:
                await entry.stop()
            except Exception:
                log.exception("component %s failed while stopping", entry.name)
                self._mark_unclean()
                return
        if scope.cancelled_caught:
            log.warning("component %s did not stop within %gs; cut off",
                        entry.name, entry.timeout)
            self._mark_unclean()
        else:
            log.debug("component %s stopped in %.3fs", entry.name, trio.current_time() - began)

    def _mark_unclean(self) -> None:
        if self.exit_code == ExitCode.OK:
            self.exit_code = ExitCode.UNCLEAN
