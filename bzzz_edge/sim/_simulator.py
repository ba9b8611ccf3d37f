"""A deterministic discrete-event simulator for sans-IO cores. No I/O, no clock.

Virtual time advances from one scheduled event to the next: a core's timer (its
``next_deadline``), a message arriving, an application event, a callback. All randomness (loss,
latency jitter, and the generators handed to cores through ``derive_rng``) comes from the seed,
and ties are broken by insertion order, so a run is a pure function of its seed and script.

The network model: each message takes ``latency`` plus a uniform share of ``jitter`` seconds, is
lost with probability ``loss``, and keeps its order on each directed link when ``fifo`` is set
(as TCP does). ``set_link`` gives one link (both directions, or one) its own behaviour: a slow
Wi-Fi hop, a lossy powerline adapter. Partitions drop messages between groups at send time.
Killing a node stops its core at once; messages addressed to it, or to an earlier life of a
restarted node, are dropped.

CPU starvation: a stalled node (``stall``, like SIGSTOP or a swap storm) does nothing for a
while: its timers, the messages that reach it and injected events all wait, and are handled
in their original order when it resumes. A node with a timer lag (``set_timer_lag``, a busy
Raspberry Pi) has every timer fire up to that many seconds late, at random.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

from bzzz_edge.errors import LocalProtocolError
from bzzz_edge.sim._protocols import Core, Wiring

__all__ = ["NetworkConfig", "Observer", "Simulator"]

EventT = TypeVar("EventT")
ActionT = TypeVar("ActionT")

Observer = Callable[[bytes, ActionT, float], None]

# Heap entry kinds.
_TICK, _DELIVER, _INJECT, _CALL = 0, 1, 2, 3
# A core still due after this many ticks at one instant is not advancing its deadline.
_MAX_TICKS_AT_ONE_INSTANT = 10_000


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Link behaviour, the same for every link; times in seconds."""

    latency: float = 0.0005
    jitter: float = 0.0005
    loss: float = 0.0
    fifo: bool = True

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability, got {self.loss!r}")


class _Node(Generic[EventT, ActionT]):
    __slots__ = ("core", "epoch", "group", "lag", "min_lag", "running", "stalled_until", "tick_at")

    def __init__(self, core: Core[EventT, ActionT]) -> None:
        self.core = core
        self.epoch = 0
        self.running = True
        self.tick_at: float | None = None
        self.group: int | None = None
        self.stalled_until = 0.0
        self.lag = 0.0
        self.min_lag = 0.0


class Simulator(Generic[EventT, ActionT]):
    """Drives many cores over a simulated network in virtual time.

    Args:
        wiring: how the cores' actions and events map onto messages.
        seed: the only source of randomness.
        network: link behaviour; change it later with ``set_network``.
        start: virtual time at which the simulation starts.
    """

    def __init__(
        self,
        wiring: Wiring[EventT, ActionT],
        *,
        seed: int,
        network: NetworkConfig | None = None,
        start: float = 0.0,
    ) -> None:
        self._wiring = wiring
        self._network = network if network is not None else NetworkConfig()
        self._now = start
        self._net_rng = random.Random(f"{seed}/network")
        self._core_rng = random.Random(f"{seed}/cores")
        self._nodes: dict[bytes, _Node[EventT, ActionT]] = {}
        self._heap: list[tuple[float, int, int, tuple[object, ...]]] = []
        self._counter = 0
        self._link_clock: dict[tuple[bytes, bytes], float] = {}
        self._links: dict[tuple[bytes, bytes], NetworkConfig] = {}
        self._observers: list[Observer[ActionT]] = []
        self._partitioned = False
        self._stats: Counter[str] = Counter()
        self._ticks_now = 0
        self._ticks_at = start

    # --- views ----------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._now

    @property
    def network(self) -> NetworkConfig:
        return self._network

    @property
    def stats(self) -> Mapping[str, int]:
        """Message counts: sent, delivered, lost, partitioned, undeliverable; and ticks."""
        return MappingProxyType(self._stats)

    def core(self, node: bytes) -> Core[EventT, ActionT]:
        return self._nodes[node].core

    def is_running(self, node: bytes) -> bool:
        entry = self._nodes.get(node)
        return entry is not None and entry.running

    def running_nodes(self) -> list[bytes]:
        return [node for node, entry in self._nodes.items() if entry.running]

    def derive_rng(self) -> random.Random:
        """A generator for a core, drawn from the seed (call in a fixed order)."""
        return random.Random(self._core_rng.getrandbits(64))

    # --- script ---------------------------------------------------------------------------------

    def observe(self, observer: Observer[ActionT]) -> None:
        """Call ``observer(node, action, now)`` for every action that is not a message."""
        self._observers.append(observer)

    def add_node(self, node: bytes, core: Core[EventT, ActionT]) -> None:
        if node in self._nodes:
            raise LocalProtocolError(f"node {node.hex()[:16]} already exists")
        self._nodes[node] = _Node(core)
        self._reschedule(node)

    def kill(self, node: bytes, *, notify_peers: bool = False) -> None:
        """Stop ``node`` now; with ``notify_peers`` its peers see their connections drop."""
        entry = self._nodes[node]
        if not entry.running:
            raise LocalProtocolError(f"node {node.hex()[:16]} is not running")
        entry.running = False
        entry.tick_at = None
        if notify_peers:
            for peer in self.running_nodes():
                event = self._wiring.connection_lost(node)
                if event is not None:
                    self.inject(peer, event, at=self._now + self._latency())

    def restart(self, node: bytes, core: Core[EventT, ActionT]) -> None:
        """Bring a killed ``node`` back with a fresh ``core`` (a new process)."""
        entry = self._nodes[node]
        if entry.running:
            raise LocalProtocolError(f"node {node.hex()[:16]} is still running")
        entry.core = core
        entry.epoch += 1
        entry.running = True
        self._reschedule(node)

    def inject(self, node: bytes, event: EventT, *, at: float | None = None) -> None:
        """Hand ``event`` to ``node``'s core at ``at`` (default: now), as its driver would."""
        when = self._now if at is None else max(at, self._now)
        self._push(when, _INJECT, (node, self._nodes[node].epoch, event))

    def call_at(self, at: float, callback: Callable[[], None]) -> None:
        self._push(max(at, self._now), _CALL, (callback,))

    def stall(self, node: bytes, duration: float) -> None:
        """Freeze ``node`` for ``duration`` seconds from now (see the module docstring)."""
        entry = self._nodes[node]
        entry.stalled_until = max(entry.stalled_until, self._now + duration)

    def set_timer_lag(self, node: bytes, lag: float, minimum: float = 0.0) -> None:
        """Make every timer of ``node`` fire ``minimum`` to ``lag`` seconds late (0: on time)."""
        if not 0 <= minimum <= lag:
            raise ValueError("need 0 <= minimum <= lag")
        self._nodes[node].lag = lag
        self._nodes[node].min_lag = minimum

    def set_network(self, network: NetworkConfig) -> None:
        self._network = network

    def set_link(self, a: bytes, b: bytes, network: NetworkConfig | None, *,
                 both_ways: bool = True) -> None:
        """Give the link from ``a`` to ``b`` (and back) its own behaviour; None: the default."""
        for link in ((a, b), (b, a)) if both_ways else ((a, b),):
            if network is None:
                self._links.pop(link, None)
            else:
                self._links[link] = network

    def partition(self, groups: Iterable[Iterable[bytes]]) -> None:
        """Split the network: messages pass only within a group; unlisted nodes are isolated."""
        for entry in self._nodes.values():
            entry.group = None
        for index, group in enumerate(groups):
            for node in group:
                self._nodes[node].group = index
        self._partitioned = True

    def heal(self) -> None:
        self._partitioned = False

    # --- running --------------------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        """Process every event scheduled up to and including ``end``; then the time is ``end``."""
        heap = self._heap
        while heap and heap[0][0] <= end:
            when, order, kind, data = heapq.heappop(heap)
            self._now = when
            if kind != _CALL and self._stalled(when, order, kind, data):
                continue
            if kind == _TICK:
                self._on_tick(data)
            elif kind == _DELIVER:
                self._on_deliver(data)
            elif kind == _INJECT:
                self._on_inject(data)
            else:
                data[0]()  # type: ignore[operator]
        self._now = max(self._now, end)

    def run_for(self, duration: float) -> None:
        self.run_until(self._now + duration)

    def run_until_true(
        self, predicate: Callable[[], bool], *, timeout: float, every: float = 0.01
    ) -> bool:
        """Run until ``predicate()`` holds (checked every ``every`` seconds) or ``timeout``."""
        end = self._now + timeout
        while True:
            if predicate():
                return True
            if self._now >= end:
                return False
            self.run_until(min(self._now + every, end))

    # --- internals ------------------------------------------------------------------------------

    def _push(self, when: float, kind: int, data: tuple[object, ...]) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, kind, data))

    def _stalled(self, when: float, order: int, kind: int, data: tuple[object, ...]) -> bool:
        """Put off an event for a stalled node until it resumes, keeping its original order."""
        node = data[1] if kind == _DELIVER else data[0]
        entry = self._nodes.get(node) if isinstance(node, bytes) else None
        if entry is None or when >= entry.stalled_until:
            return False
        heapq.heappush(self._heap, (entry.stalled_until, order, kind, data))
        return True

    def _latency(self, net: NetworkConfig | None = None) -> float:
        net = self._network if net is None else net
        return net.latency + (self._net_rng.uniform(0, net.jitter) if net.jitter else 0.0)

    def _reschedule(self, node: bytes) -> None:
        entry = self._nodes[node]
        deadline = entry.core.next_deadline() if entry.running else None
        if deadline is not None:
            deadline = max(deadline, self._now)
            if deadline != entry.tick_at:
                # A lagging node's timer fires late; the tick itself is identified by the
                # deadline asked for, so a newer schedule still supersedes it.
                late = self._net_rng.uniform(entry.min_lag, entry.lag) if entry.lag else 0.0
                self._push(deadline + late, _TICK, (node, entry.epoch, deadline))
        entry.tick_at = deadline

    def _on_tick(self, data: tuple[object, ...]) -> None:
        node, epoch, when = data
        assert isinstance(node, bytes)
        entry = self._nodes[node]
        if not entry.running or epoch != entry.epoch or when != entry.tick_at:
            return  # superseded by a later schedule, or the node died
        if self._now != self._ticks_at:
            self._ticks_at, self._ticks_now = self._now, 0
        self._ticks_now += 1
        if self._ticks_now > _MAX_TICKS_AT_ONE_INSTANT:
            raise LocalProtocolError(f"core of {node.hex()[:16]} does not advance its deadline")
        self._stats["ticks"] += 1
        entry.tick_at = None
        self._perform(node, entry.core.tick(self._now))

    def _on_deliver(self, data: tuple[object, ...]) -> None:
        sender, dest, epoch, payload = data
        assert isinstance(sender, bytes) and isinstance(dest, bytes)
        entry = self._nodes[dest]
        if not entry.running or epoch != entry.epoch:
            self._stats["undeliverable"] += 1
            return
        self._stats["delivered"] += 1
        event = self._wiring.incoming(sender, payload)
        self._perform(dest, entry.core.handle(event, self._now))

    def _on_inject(self, data: tuple[object, ...]) -> None:
        node, epoch, event = data
        assert isinstance(node, bytes)
        entry = self._nodes[node]
        if not entry.running or epoch != entry.epoch:
            return
        self._perform(node, entry.core.handle(event, self._now))  # type: ignore[arg-type]

    def _perform(self, node: bytes, actions: Sequence[ActionT]) -> None:
        for action in actions:
            outgoing = self._wiring.outgoing(action)
            if outgoing is None:
                for observer in self._observers:
                    observer(node, action, self._now)
            else:
                self._send(node, outgoing.to, outgoing.payload)
        self._reschedule(node)

    def _send(self, sender: bytes, dest: bytes, payload: object) -> None:
        self._stats["sent"] += 1
        entry = self._nodes.get(dest)
        if entry is None or not entry.running:
            self._stats["undeliverable"] += 1
            return
        if self._partitioned and (entry.group is None or entry.group != self._nodes[sender].group):
            self._stats["partitioned"] += 1
            return
        net = self._links.get((sender, dest), self._network) if self._links else self._network
        if net.loss and self._net_rng.random() < net.loss:
            self._stats["lost"] += 1
            return
        when = self._now + self._latency(net)
        if net.fifo:
            link = (sender, dest)
            when = max(when, self._link_clock.get(link, 0.0))
            self._link_clock[link] = when
        self._push(when, _DELIVER, (sender, dest, entry.epoch, payload))
