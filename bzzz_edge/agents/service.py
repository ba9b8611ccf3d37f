"""The agents service: broadcasts this node's availability, roles and capabilities on
``bzzz/agents/v1`` and keeps the directory of every node's. Uses trio.

It drives three sans-IO cores: the ``Directory`` (what every node said, bounded), the
``Broadcaster`` (when to broadcast, and when with roles and capabilities) and the ``WantTimer``
(when to ask for the roles and capabilities this node lacks). What it feeds them:
- deliveries of the topic (a bounded subscription; the origin is the signed sender; each
  origin may make us parse ``_ORIGIN_RATE`` messages a second, the excess dropped unparsed);
- membership's changes (a node alive for the first time, or again, is a newcomer; dead and
  left nodes are marked); after missed changes, membership's whole view;
- this node's own state, sampled once a second at most (tasks held, from the task service, at
  O(1) unless the decision log moved on) and at each broadcast (load and memory from psutil).

Why a topic of its own rather than ``bzzz/coordination/v1``, where the original sent them:
subscribers of the coordination topic (the SSE stream, ``bzzz-edge sub``, scripts waiting for
task events) see task events only, not a message per node every 30 s and at each join; the
topic's counters (``/api/v1/topics``) measure this traffic alone; and anything on this topic
that is not an agents message is malformed, so it is counted as such rather than skipped as
someone else's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psutil
import trio

from ..errors import BzzzError
from ..feed import Overflowed
from ..gossip import PeerBudget
from ..gossip.delivery import Delivery, Published
from ..gossip.service import GossipService
from ..ids import format_node_id, short_id
from ..membership import MemberEvent, Status
from ..membership.service import MembershipService
from ..tasks import ACTIVE, Profile
from ._broadcast import Broadcaster, Local, WantTimer
from ._directory import Directory
from ._messages import (
    MAX_MESSAGE_BYTES,
    MAX_TASK_IDS,
    Availability,
    Refused,
    Want,
    decode,
    encode_availability,
    encode_want,
    profile_digest,
)
from ._views import entry_view

__all__ = ["TOPIC", "AgentService"]

log = logging.getLogger(__name__)

TOPIC = "bzzz/agents/v1"
_POLL = 1.0  # seconds between looks at this node's own state (tasks held) at most
_BUFFER = 256  # deliveries queued for us at most (the oldest dropped, counted by gossip)
_BACK = {Status.DEAD, Status.LEFT}
# Messages one origin may make us parse: an honest node sends one every interval, one a second
# at most on change, and a few wants while it lacks profiles; the excess is dropped unparsed.
_ORIGIN_RATE = 4.0
_ORIGIN_BURST = 20.0


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
        now = trio.current_time()
        self.directory = Directory(me)
        self.broadcaster = Broadcaster(interval(), now)
        self.wants = WantTimer(ceiling=interval())
        self.counters: Counter[str] = Counter()
        self._wake = trio.Event()
        self._applied = -1
        self._held_ids: tuple[str, ...] = ()
        self._warned: set[str] = set()
        self._budget = PeerBudget(rate=_ORIGIN_RATE, burst=_ORIGIN_BURST,
                                  max_peers=self.directory.max_entries)
        self._digest: tuple[Profile | None, str] = (None, "")
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
        return {**self.directory.counters, **self.counters}

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
            now = trio.current_time()
            interval = self._interval()
            self.broadcaster.set_interval(interval, now)
            self.wants.ceiling = interval
            local = self._local()
            self.broadcaster.local(local, now)
            if self.broadcaster.due(now):
                self._broadcast(local, now)
            wanted = self.wants.due(self.directory.lacking(), now)
            if wanted:
                self._publish(encode_want(tuple(format_node_id(n) for n in wanted)), "want")
            for node in self.directory.tick(now):
                log.debug("agents: forgot %s", short_id(node))
            deadline = min(self.broadcaster.next_deadline(), now + _POLL,
                           self.wants.next_deadline() or now + _POLL)
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()

    def _local(self) -> Local:
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
        return Local(self._name(), profile.capacity, held, ids, self._digest[1])

    def _profile(self) -> Profile:
        tasks = self._tasks
        if tasks is None:
            return Profile({}, frozenset(), 0)
        profile: Profile = tasks.profile
        return profile

    def _broadcast(self, local: Local, now: float) -> None:
        profile = self._profile()
        with_profile = self.broadcaster.with_profile
        memory = psutil.virtual_memory()
        a = Availability(
            name=local.name, load=psutil.getloadavg(), memory_percent=memory.percent,
            memory_available=memory.available, cpus=psutil.cpu_count() or 0,
            capacity=local.capacity, held=local.held, tasks=local.tasks, profile=local.profile,
            roles=profile.roles if with_profile else None,
            capabilities=profile.capabilities if with_profile else None)
        data = encode_availability(a)
        if len(data) > MAX_MESSAGE_BYTES:  # roles and patterns beyond what peers take
            self._warn_once("own_too_long", "agents: this node's roles and capabilities make "
                            "a message of %d bytes, over %d: sent without them", len(data),
                            MAX_MESSAGE_BYTES)
            self.counters["own_too_long"] += 1
            a = dataclasses.replace(a, roles=None, capabilities=None)
            data = encode_availability(a)
        self.broadcaster.sent(local, now)
        published = self._publish(data, "availability")
        # This node's own entry, as the others hear it (our own deliveries are skipped).
        old = self.directory.entries.get(self.me)
        seq = published.seq if published is not None else (old.seq + 1 if old else 1)
        self.directory.heard(self.me, seq, int(time.time() * 1000), a, now)

    def _publish(self, data: bytes, kind: str) -> Published | None:
        """Publish on the topic; None when it could not be sent."""
        if self._gossip is None:
            return None
        try:
            published = self._gossip.publish(TOPIC, data)
        except BzzzError as exc:
            self.counters["publish_failed"] += 1
            log.warning("agents: %s not published: %s", kind, exc)
            return None
        self.counters[f"sent_{kind}"] += 1
        return published

    # --- what arrives -------------------------------------------------------------------------

    async def _receive(self, sub: Any) -> None:
        async for delivery in sub:
            self.on_delivery(delivery)

    def on_delivery(self, delivery: Delivery) -> None:
        """Take one message of the topic; a bad one is refused and counted, never raised."""
        if delivery.origin == self.me:
            return
        now = trio.current_time()
        if not self._budget.spend(delivery.origin, now):
            self.counters["refused_rate"] += 1
            self._warn_once("refused_rate", "agents: %s sends more than %g messages a second; "
                            "the excess is dropped", short_id(delivery.origin), _ORIGIN_RATE)
            return
        try:
            message = decode(delivery.data)
        except Refused as exc:
            key = f"refused_{exc.reason.value}"
            self.counters[key] += 1
            self._warn_once(key, "agents: message from %s refused (%s): %s",
                            short_id(delivery.origin), exc.reason.value, exc)
            return
        if isinstance(message, Want):
            self.counters["received_want"] += 1
            if self.me in message.nodes:
                self.counters["wants_for_us"] += 1
                self.broadcaster.wanted(now)
                self._wake.set()
            return
        self.counters["received_availability"] += 1
        self.directory.heard(delivery.origin, delivery.seq, delivery.timestamp_ms, message, now)

    def _warn_once(self, key: str, text: str, *args: object) -> None:
        """Loudly the first time for each kind, quietly after (a peer's garbage)."""
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        log.log(level, text, *args)

    # --- membership ---------------------------------------------------------------------------

    async def _follow_members(self, changes: Any) -> None:
        async for event in changes:
            if isinstance(event, Overflowed):
                self._resync_members()
            elif isinstance(event, MemberEvent):
                self.on_member(event)

    def on_member(self, event: MemberEvent) -> None:
        now = trio.current_time()
        self.directory.member(event.node, event.new_status.name.lower(), now)
        if event.node != self.me and event.new_status is Status.ALIVE and (
                event.old_status is None or event.old_status in _BACK):
            self.broadcaster.newcomer(now)
            self._wake.set()

    def _resync_members(self) -> None:
        core = getattr(self._membership, "core", None)
        if core is None:
            return
        self.directory.members(((m.node, m.status.name.lower()) for m in core.members()
                                if m.node != self.me), trio.current_time())
