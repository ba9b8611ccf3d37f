"""Automatic voter selection (issue 14 point 2): which configuration change to propose next. No I/O.

A pure function of what the leader knows: the configuration, which members membership holds
alive, since when the others are dead, and which learners have caught up. It proposes at most
one single-server change at a time (the core accepts no other kind), in this order:

1. promote a live, caught-up learner while fewer voters are alive than wanted;
2. demote to learner the voter dead longest, once it has been dead ``dead_after`` seconds
   (it stays a member, so it follows the log again when it returns, and may be promoted);
3. demote a live voter when all voters are live, there are more than wanted and their number
   is even (an even count tolerates no more failures than the odd count below it, and costs
   more); while a voter is dead, rule 2 removes it first, so live voters are not churned.

"Wanted" is the largest odd number no greater than ``target`` (``coordination.voters``) and
the number of live members, and at least 1: one node alone is its own coordinator, two nodes
have one voter, four have three. Ties are broken by node ID so every leader decides alike.
The leader is never demoted here: it hands over first.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from bzzz_edge.consensus._events import ChangeMember, Role
from bzzz_edge.consensus._messages import Configuration

__all__ = ["next_change", "wanted_voters"]


def wanted_voters(target: int, live_members: int) -> int:
    """The largest odd number at most ``target`` and ``live_members``, and at least 1."""
    wanted = max(1, min(target, live_members))
    return wanted if wanted % 2 == 1 else wanted - 1


def next_change(
    config: Configuration,
    *,
    leader: bytes,
    live: Set[bytes],
    dead_since: Mapping[bytes, float],
    caught_up: Set[bytes],
    now: float,
    target: int,
    dead_after: float,
    ref: int = 0,
) -> ChangeMember | None:
    """The one change to propose now, or None if the configuration is as wanted.

    Args:
        config: the configuration in force.
        leader: this node (the leader), never demoted.
        live: members membership holds alive (this node included).
        dead_since: when membership declared each dead member dead.
        caught_up: learners whose replication has reached the commit index.
        now: the current time, on the clock of ``dead_since``.
        target: ``coordination.voters``.
        dead_after: how long a voter may be dead before it is replaced.
        ref: passed through to the ``ChangeMember``.
    """
    live_voters = config.voters & live
    wanted = wanted_voters(target, len(config.members & live))
    if len(live_voters) < wanted:
        ready = sorted((config.learners & live) & caught_up)
        if ready:
            return ChangeMember(ref, ready[0], Role.VOTER)
    dead = sorted(
        (dead_since[v], v) for v in config.voters - live - {leader}
        if v in dead_since and now - dead_since[v] >= dead_after
    )
    if dead and len(config.voters) > 1:
        return ChangeMember(ref, dead[0][1], Role.LEARNER)
    if len(config.voters) > wanted and len(config.voters) % 2 == 0 and config.voters <= live:
        spare = sorted(live_voters - {leader})
        if spare:
            return ChangeMember(ref, spare[-1], Role.LEARNER)
    return None
