"""The agents service: broadcasts this node's availability, roles and capabilities on
``bzzz/agents/v1`` and keeps the directory of every node's. Uses trio.

It drives the sans-IO ``AgentsCore`` (the directory, the broadcast schedule, the wants) with:
- deliveries of the topic (a bounded subscription; the origin is the signed sender);
- membership's changes (after missed ones, membership's whole view);
- this node's own state, sampled once a second at most and when a broadcast is due: the tasks
  it holds (from the task service, at O(1) unless the decision log moved on), its claim
  profile (roles, capabilities, capacity), load and memory from psutil;
and publishes what the core returns, logging a peer's refused message loudly the first time
for each reason and quietly after.

Why a topic of its own rather than ``bzzz/coordination/v1``, where the original sent them:
subscribers of the coordination topic (the SSE stream, ``bzzz-edge sub``, scripts waiting for
task events) see task events only, not a message per node every 30 s and at each join; the
topic's counters (``/api/v1/topics``) measure this traffic alone; and anything on this topic
that is not an agents message is malformed, so it is counted as such rather than skipped as
someone else's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psutil
import trio

from ..errors import BzzzError
from ..feed import Overflowed
from ..gossip.delivery import Delivery
from ..gossip.service import GossipService
from ..ids import short_id
from ..membership import MemberEvent
from ..membership.service import MembershipService
from ..tasks import ACTIVE, Profile
from ._broadcast import Local
from ._core import (
    Action,
    AgentsCore,
    Event,
    MemberChanged,
    MembersResync,
    Publish,
    Received,
    Rejected,
    Sample,
    Sampled,
)
from ._messages import MAX_TASK_IDS, profile_digest
from ._views import entry_view

__all__ = ["TOPIC", "AgentService"]

log = logging.getLogger(__name__)

TOPIC = "bzzz/agents/v1"
_POLL = 1.0  # seconds between looks at this node's own state at most
_BUFFER = 256  # deliveries queued for us at most (the oldest dropped, counted by gossip)


class AgentService:
    """Availability broadcasts and the directory of agents for one node.

    Args:
        me: this node's ID.
        gossip, membership: the running services (None: nothing is sent or heard).
        tasks: the task service (its claim profile and the tasks this node holds), or None.
        name: this node's name; interval: seconds between broadcasts (read at each look, so a
            reload applies).
    """

    def __init__(self, me: bytes, *, gossip: GossipService | None,
                 membership: MembershipService | None, tasks: Any,
                 name: Callable[[], str], interval: Callable[[], float]) -> None:
        self.me = me
        self._gossip = gossip
        self._membership = membership
        self._tasks = tasks
        self._name = name
        self._interval = interval
        self.core = AgentsCore(me, interval=interval(), now=trio.current_time())
        self.directory = self.core.directory
        self.counters: dict[str, int] = {"publish_failed": 0}
        self._wake = trio.Event()
        self._sleeping_until = float("inf")
        self._applied = -1
        self._held_ids: tuple[str, ...] = ()
        self._digest: tuple[Profile | None, str] = (None, "")
        self._warned: set[str] = set()
        # What to do with each kind of action the core returns (it returns no other kind).
        self._on_action: dict[type, Callable[[Any], None]] = {Publish: self._publish,
                                                               Rejected: self._rejected}
        # From here on; what came before is made up: membership's view is read at start, and
        # a node whose profile we lack is asked for it (a want).
        self._sub = gossip.subscribe(TOPIC, _BUFFER) if gossip is not None else None
        self._changes = membership.changes.subscribe() if membership is not None else None

    # --- views --------------------------------------------------------------------------------

    def agents(self) -> list[dict[str, Any]]:
        """Every agent in the directory (this node first, then by name)."""
        now = trio.current_time()
        rows = [entry_view(e, now, self.me) for e in self.directory.entries.values()]
        rows.sort(key=lambda r: (not r["self"], r["name"], r["node_id"]))
        return rows

    def counts(self) -> dict[str, int]:
        return {**self.core.counts(), **self.counters}

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._resync_members()
        try:
            async with trio.open_nursery() as nursery:
                if self._sub is not None:
                    nursery.start_soon(self._receive, self._sub)
                if self._changes is not None:
                    nursery.start_soon(self._follow_members, self._changes)
                nursery.start_soon(self._ticker)
                task_status.started()
        finally:
            if self._sub is not None:
                self._sub.close()
            if self._changes is not None:
                self._changes.close()

    async def _ticker(self) -> None:
        while True:
            self._sleeping_until = float("-inf")  # awake: whatever is due is seen below
            now = trio.current_time()
            self._handle(Sampled(self._sample(), self._interval()))
            self._perform(self.core.tick(now))
            self._sleeping_until = min(self.core.next_deadline(), now + _POLL)
            with trio.move_on_at(self._sleeping_until):
                await self._wake.wait()
            self._wake = trio.Event()

    def _handle(self, event: Event) -> None:
        self._perform(self.core.handle(event, trio.current_time()))
        if self.core.next_deadline() < self._sleeping_until:
            self._wake.set()  # something is due before the ticker would look

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            self._on_action[type(action)](action)

    def _rejected(self, action: Rejected) -> None:
        self._warn_once(action.reason, "agents: message from %s refused (%s): %s",
                        short_id(action.origin), action.reason, action.text)

    def _publish(self, action: Publish) -> None:
        if self._gossip is None:
            return
        try:
            self._gossip.publish(TOPIC, action.data)
        except BzzzError as exc:
            self.counters["publish_failed"] += 1
            log.warning("agents: %s not published: %s", action.kind, exc)

    def _warn_once(self, key: str, text: str, *args: object) -> None:
        """Loudly the first time for each kind, quietly after (a peer's garbage)."""
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        log.log(level, text, *args)

    # --- this node ----------------------------------------------------------------------------

    def _sample(self) -> Sample:
        profile = self._profile()
        held, ids = 0, self._held_ids
        tasks = self._tasks
        if tasks is not None:
            machine = tasks.machine
            held = machine.holding(self.me)
            if machine.applied != self._applied:  # else the IDs cannot have changed
                self._applied = machine.applied
                self._held_ids = tuple(sorted(t.id for t in machine.tasks.values()
                                              if t.state in ACTIVE and t.owner == self.me
                                              )[:MAX_TASK_IDS])
                ids = self._held_ids
        if self._digest[0] is not profile:  # the same profile object: the same digest
            self._digest = (profile, profile_digest(profile.roles, profile.capabilities))
        memory = psutil.virtual_memory()
        return Sample(Local(self._name(), profile.capacity, held, ids, self._digest[1]),
                      profile.roles, profile.capabilities, load=psutil.getloadavg(),
                      memory_percent=memory.percent, memory_available=memory.available,
                      cpus=psutil.cpu_count() or 0, wall_ms=int(time.time() * 1000))

    def _profile(self) -> Profile:
        tasks = self._tasks
        if tasks is None:
            return Profile({}, frozenset(), 0)
        profile: Profile = tasks.profile
        return profile

    # --- what arrives -------------------------------------------------------------------------

    async def _receive(self, sub: Any) -> None:
        async for delivery in sub:
            self.on_delivery(delivery)

    def on_delivery(self, delivery: Delivery) -> None:
        """Take one message of the topic; a bad one is refused and counted, never raised."""
        self._handle(Received(delivery.origin, delivery.seq, delivery.timestamp_ms,
                              delivery.data))

    async def _follow_members(self, changes: Any) -> None:
        async for event in changes:
            if isinstance(event, Overflowed):
                self._resync_members()
            elif isinstance(event, MemberEvent):
                self.on_member(event)

    def on_member(self, event: MemberEvent) -> None:
        old = None if event.old_status is None else event.old_status.name.lower()
        self._handle(MemberChanged(event.node, old, event.new_status.name.lower()))

    def _resync_members(self) -> None:
        core = getattr(self._membership, "core", None)
        if core is not None:
            self._handle(MembersResync(tuple((m.node, m.status.name.lower())
                                             for m in core.members())))
