"""The leader's upkeep of the configuration and a fresh node's founding rule. No I/O.

``upkeep_change`` extends the voter policy (``_policy.next_change``: promote, replace dead
voters, keep the count odd) with the two changes membership asks for: a live member that is
not in the configuration yet joins as a learner, and a member that left (SIGTERM, or an
operator's force-leave) is removed. One change at a time; the core refuses a second while the
first is not committed.

``may_found``: a node that belongs to no group yet founds one (``{itself}``, so a lone node is
its own coordinator) only when it has waited ``bootstrap_wait`` since it started, no live peer
it asked belongs to a group (then that group's leader adds it), every live peer has answered,
and it has the lowest ID among the live ones (so nodes that start together found one group).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from bzzz_edge.consensus._events import ChangeMember, Role
from bzzz_edge.consensus._messages import Configuration
from bzzz_edge.consensus._policy import next_change

__all__ = ["may_found", "upkeep_change"]


def upkeep_change(
    config: Configuration,
    *,
    leader: bytes,
    live: Set[bytes],
    left: Set[bytes],
    dead_since: Mapping[bytes, float],
    caught_up: Set[bytes],
    now: float,
    target: int,
    dead_after: float,
) -> ChangeMember | None:
    """The one configuration change the leader should propose now, or None."""
    change = next_change(config, leader=leader, live=live, dead_since=dead_since,
                         caught_up=caught_up, now=now, target=target, dead_after=dead_after)
    if change is not None:
        return change
    newcomers = sorted(live - config.members)
    if newcomers:
        return ChangeMember(0, newcomers[0], Role.LEARNER)
    gone = sorted((left & config.members) - {leader})
    if gone:
        return ChangeMember(0, gone[0], Role.REMOVED)
    return None


def may_found(
    me: bytes,
    *,
    live_peers: Set[bytes],
    answers: Mapping[bytes, bool],
    waited: float,
    bootstrap_wait: float,
) -> bool:
    """Whether a node in no group founds one now.

    Args:
        me: this node.
        live_peers: the other members membership holds alive.
        answers: for each peer asked, whether it belongs to a group.
        waited: seconds since this node started.
        bootstrap_wait: ``coordination.bootstrap_wait``.
    """
    if waited < bootstrap_wait:
        return False
    if any(answers.get(peer, False) for peer in live_peers):
        return False
    if not all(peer in answers for peer in live_peers):
        return False
    return all(me < peer for peer in live_peers)
