"""The consensus service's membership side: hints, the leader's configuration upkeep, and
founding or joining a group. Uses trio.

Functions over the service (``service.ConsensusService``), run as its tasks:
``follow_members`` turns membership's verdicts into ``LeaderLost`` hints and upkeep triggers;
``follow_connections`` turns a closed connection to our leader into a ``LeaderLost`` hint;
``keep_configuration`` proposes, on the leader, the next change ``_upkeep.upkeep_change``
wants; ``found_or_join`` asks live peers whether they belong to a group and founds one when
``_upkeep.may_found`` says so.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

import msgpack
import trio

from ..feed import Overflowed
from ..ids import short_id
from ..membership import MemberEvent, Status
from ..net import ConnectionClosed, PeerDisconnected, RequestFailed
from ._events import ChangeMember, LeaderLost, State
from ._inbox import GROUP_LEN
from ._upkeep import may_found, upkeep_change

if TYPE_CHECKING:
    from .service import ConsensusService

__all__ = ["UPKEEP_INTERVAL", "follow_connections", "follow_members", "found_or_join",
           "keep_configuration", "live_members"]

log = logging.getLogger(__name__)

UPKEEP_INTERVAL = 0.5


async def follow_members(service: ConsensusService) -> None:
    async for event in service._changes:
        if isinstance(event, Overflowed):
            service._upkeep_due.set()
            continue
        assert isinstance(event, MemberEvent)
        if event.new_status in (Status.DEAD, Status.LEFT):
            service._dead_since.setdefault(event.node, trio.current_time())
            service._enqueue(LeaderLost(event.node))
        else:
            service._dead_since.pop(event.node, None)
        if event.old_status != event.new_status:
            service._upkeep_due.set()


async def follow_connections(service: ConsensusService) -> None:
    """A kill -9 of the leader closes its connections at once, long before membership or an
    election timeout can tell: that is the hint that makes failover fast (``_election``).
    Every closed connection is told: the core also acts when it is the candidate this node
    just voted for (which may have won, unknown here yet), and ignores the rest."""
    async for event in service._connection_events:
        if isinstance(event, PeerDisconnected):
            service._enqueue(LeaderLost(event.peer_id))


def live_members(service: ConsensusService) -> tuple[set[bytes], set[bytes]]:
    """Members alive (this node included) and members that left, as membership says."""
    core = service._membership.core
    if core is None:
        return {service.node_id}, set()
    live = {m.node for m in core.alive_members()} | {service.node_id}
    left = {m.node for m in core.members() if m.status is Status.LEFT}
    return live, left


async def keep_configuration(service: ConsensusService) -> None:
    """On the leader: propose the next configuration change, one at a time.

    It looks every ``UPKEEP_INTERVAL`` while a change may become due with time alone (a member
    dead but not for long enough yet, a member not caught up); once every member is alive and
    caught up and nothing is to change, only an event (membership, a configuration entry, a
    role change: ``_upkeep_due``) can make one due, so it sleeps until then.
    """
    settled = False
    while True:
        core = service.core
        if core is None or core.state is not State.LEADER:
            await service.next_role_change()  # no timer on the others: an idle node sleeps
            settled = False
            continue
        with trio.move_on_after(math.inf if settled else UPKEEP_INTERVAL):
            await service._upkeep_due.wait()
        service._upkeep_due = trio.Event()
        core = service.core
        if core is None or core.state is not State.LEADER or service._change_ref is not None:
            continue
        live, left = live_members(service)
        config, now = core.configuration, trio.current_time()
        dead_since = {n: service._dead_since.get(n, service._started_at)
                      for n in config.members - live}
        caught_up = core.caught_up(now)
        change = upkeep_change(config, leader=service.node_id, live=live, left=left,
                               dead_since=dead_since, caught_up=caught_up, now=now,
                               target=service._voters, dead_after=service._dead_after)
        settled = change is None and not dead_since and \
            config.members - {service.node_id} <= caught_up
        if change is not None:
            ref, _ = service._proposals.open()
            service._proposals.close(ref)  # nobody waits on it; the ref marks it as ours
            service._change_ref = ref
            log.info("consensus: proposing %s as %s", short_id(change.node),
                     change.role.value)
            service._enqueue(ChangeMember(ref, change.node, change.role))


async def found_or_join(service: ConsensusService) -> None:
    """While in no group: found one, or wait for a leader to add us."""
    answers: dict[bytes, bool] = {}
    while service.group is None:
        live, _ = live_members(service)
        live.discard(service.node_id)
        for peer in sorted(live - {p for p, has in answers.items() if has}):
            answers[peer] = await _peer_has_group(service, peer)
        waited = trio.current_time() - service._started_at
        if service.group is None and may_found(service.node_id, live_peers=live, answers=answers,
                                            waited=waited,
                                            bootstrap_wait=service._bootstrap_wait):
            group = service.node_id + os.urandom(GROUP_LEN - 32)
            service._enqueue(group, front=True)
            log.info("consensus: founding group %s", short_id(group))
            return
        with trio.move_on_after(UPKEEP_INTERVAL / 2):
            await service._upkeep_due.wait()


async def _peer_has_group(service: ConsensusService, peer: bytes) -> bool:
    try:
        raw = await service._manager.request(peer, "raft.hello", b"", timeout=1.0)
        value = msgpack.unpackb(raw)
    except (ConnectionClosed, RequestFailed, ValueError, msgpack.UnpackException):
        return False
    return isinstance(value, dict) and isinstance(value.get("group"), bytes)
