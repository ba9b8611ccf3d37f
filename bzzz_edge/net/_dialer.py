"""The dialler: keeps a connection to every address the dial book wants. Uses trio.

One task per wanted address dials, and redials with exponential backoff (jittered) while the
address stays wanted. A node we know to have the lower ID is given a head start, since both
sides keep the connection the lower ID opened. An address from a non-static source that has
never answered within ``dial_give_up`` seconds is given up and leaves the book, so addresses
made up by peers (gossiped fake members, fake mDNS services) stop costing us anything.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping

import trio

from ..errors import BzzzError
from ._connection import Connection
from ._dialing import Change, DialBook, Source
from ._events import Address
from ._guard import Guard
from ._limits import NetLimits

__all__ = ["Dialer"]

log = logging.getLogger(__name__)

#: ``connect(address, expected_node) -> connection`` (None: ourselves, refused, or a duplicate)
Connect = Callable[[Address, "bytes | None"], Awaitable["Connection | None"]]
#: What a dial may fail with: the network, the peer (handshake), a timeout, a bad name.
_DIAL_ERRORS = (BzzzError, OSError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError, UnicodeError)
#: Labels a dial failure for the counters.
Cause = Callable[[BaseException], str]


class Dialer:
    def __init__(self, node_id: bytes, limits: NetLimits, guard: Guard, *, connect: Connect,
                 connections: Callable[[], Mapping[bytes, Connection]], cause: Cause) -> None:
        self._node_id = node_id
        self._limits = limits
        self._guard = guard
        self._connect = connect
        self._connections = connections
        self._cause = cause
        self.book = DialBook(node_id, max_per_source=limits.max_connections)
        self.counters: Counter[str] = Counter()
        self._expected: dict[Address, bytes | None] = {}
        self._persistent: set[Address] = set()
        self._tasks: dict[Address, trio.CancelScope] = {}
        self._own: set[Address] = set()
        self._nursery: trio.Nursery | None = None
        self._stopped = False

    def want(self, address: Address, source: Source, node: bytes | None = None) -> None:
        if not self._stopped and address not in self._own:
            self._apply(self.book.want(address, source, node))

    def unwant_node(self, node: bytes) -> None:
        self._apply(self.book.forget_node(node))

    def unwant(self, address: Address, source: Source | None = None) -> None:
        self._apply(self.book.forget_address(address, source))

    def learned(self, address: Address, node: bytes) -> None:
        """The node at ``address`` authenticated as ``node``; if that is us, never dial it."""
        if node == self._node_id:
            self._own.add(address)
            self._stop(address)
            self.book.forget_address(address)
        elif address in self._expected:
            self._expected[address] = node

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for address in list(self._expected):
            nursery.start_soon(self._dial_loop, address)

    def stop(self) -> None:
        """Stop dialling for good (the node is leaving)."""
        self._stopped = True
        for address in list(self._tasks):
            self._stop(address)
        self._expected.clear()

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            if not change.dial:
                self._stop(change.address)
                continue
            self._expected[change.address] = change.node
            if change.persistent:
                self._persistent.add(change.address)
            if self._nursery is not None and change.address not in self._tasks:
                self._nursery.start_soon(self._dial_loop, change.address)

    def _stop(self, address: Address) -> None:
        self._expected.pop(address, None)
        self._persistent.discard(address)
        scope = self._tasks.pop(address, None)
        if scope is not None:
            scope.cancel()

    async def _dial_loop(self, address: Address) -> None:
        scope = self._tasks[address] = trio.CancelScope()
        limits = self._limits
        backoff = limits.backoff_initial
        began, answered = trio.current_time(), False

        async def back_off() -> None:
            nonlocal backoff
            await trio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, limits.backoff_max)

        with scope:
            while address in self._expected:
                expected = self._expected[address]
                connected = self._connections().get(expected) if expected else None
                if connected is not None:
                    await connected.closed.wait()
                    continue
                if expected is not None and self._guard.refused(expected, "", trio.current_time()):
                    await trio.sleep_until(self._guard.banned_until(expected))
                    continue
                if expected is not None and expected < self._node_id and \
                        backoff == limits.backoff_initial:
                    # The lower ID is the preferred opener; give its connection a head start.
                    await trio.sleep(limits.backoff_initial * 3)
                    if expected in self._connections():
                        continue
                try:
                    conn = await self._connect(address, expected)
                except _DIAL_ERRORS as exc:
                    self.counters[f"dial_failed_{self._cause(exc)}"] += 1
                    log.debug("dial %s:%d failed: %s", *address, exc)
                    if not answered and address not in self._persistent and \
                            trio.current_time() - began > limits.dial_give_up:
                        self.counters["dial_given_up"] += 1
                        self.unwant(address)
                        break
                    await back_off()
                    continue
                answered = True
                if conn is None:  # refused, or lost a duplicate race: try again later
                    await back_off()
                    continue
                opened = trio.current_time()
                await conn.closed.wait()
                # Only a connection that lasted resets the backoff, not one closed at once.
                if trio.current_time() - opened > limits.backoff_max:
                    backoff = limits.backoff_initial
                else:
                    await back_off()
        if self._tasks.get(address) is scope:
            del self._tasks[address]
