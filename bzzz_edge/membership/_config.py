"""Membership timing profiles and the pure arithmetic behind them. No I/O.

Like hashicorp/memberlist, the tunables live in one frozen record with presets (``lan()``, the
default, and ``local()`` for clusters on one machine), and the arithmetic (retransmit limit,
suspicion timeout, push-pull scaling, the failure-detection bound) lives in small pure functions
so that it can be tested and quoted on its own.

Why the LAN preset is ten times faster than memberlist's: bzzz-edge coordinates in well under a
second on a home LAN where a round trip over an open TCP connection costs about a millisecond.
One probe every 100 ms costs each node ten small pings a second whatever the cluster size, and
gossip only runs while there is news, so an idle node stays idle. With these settings a killed
node is declared dead by every other node of a 10-node cluster within
``detection_bound(lan(), 10)`` = 2.6 s, even with no help from gossip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from bzzz_edge.errors import ConfigError

__all__ = [
    "MembershipConfig",
    "detection_bound",
    "lan",
    "local",
    "push_pull_scale",
    "retransmit_limit",
    "suspicion_timeout",
]

# Above this many nodes push-pull syncs slow down (memberlist's pushPullScaleThreshold).
_PUSH_PULL_SCALE_THRESHOLD = 32


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Tunables of the SWIM membership core; times are in seconds.

    Attributes:
        probe_interval: one member is probed per interval (round robin).
        probe_timeout: how long to wait for a direct ack before asking others to probe; also
            how long a node relaying a ping-req waits before answering with a nack. Must be
            under half the probe interval so that those nacks arrive within the probe period.
        indirect_checks: members asked to probe a target that missed its direct ack.
        suspicion_mult: suspicion timeout in probe intervals (scaled by log10 of cluster size).
        suspicion_max_timeout_mult: the suspicion timeout starts at this multiple of the minimum
            and shrinks towards the minimum as other members independently confirm (Lifeguard).
        retransmit_mult: each piece of news is sent ``retransmit_mult * ceil(log10(n + 1))``
            times by every node that learns it.
        gossip_interval: how often queued news is pushed to ``gossip_nodes`` random members.
        gossip_nodes: fanout of each gossip round.
        gossip_to_the_dead_time: dead members still receive gossip for this long, so one that
            was declared dead by mistake hears about it and refutes.
        max_piggyback: most updates carried by one message.
        awareness_max_multiplier: a node that misses acks and nacks (Lifeguard local health)
            stretches its probe interval and timeout up to this factor.
        push_pull_interval: full state exchange with a random member (anti-entropy), scaled up
            for clusters of more than 32 nodes.
        reconnect_interval: a full state exchange is attempted with a random dead member this
            often, which is how the two sides of a healed partition find each other again.
        tombstone_time: dead and departed members are remembered (and dead ones retried) this
            long, so stale news cannot resurrect them; then they are forgotten.
        join_retry_interval: an unanswered join (full-state exchange) is retried this often...
        join_attempts: ...this many times in all, unless the node turns up alive meanwhile.
    """

    probe_interval: float = 0.1
    probe_timeout: float = 0.04
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 4
    retransmit_mult: int = 4
    gossip_interval: float = 0.05
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 2.0
    max_piggyback: int = 16
    awareness_max_multiplier: int = 8
    push_pull_interval: float = 15.0
    reconnect_interval: float = 2.0
    tombstone_time: float = 3600.0
    join_retry_interval: float = 0.5
    join_attempts: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            wants_int = f.type == "int"
            ok = isinstance(value, int if wants_int else int | float)
            ok = ok and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value <= 0:
                kind = "int" if wants_int else "number"
                raise ConfigError(
                    f"membership.{f.name}: expected a positive {kind}, got {value!r}",
                    key=f"membership.{f.name}",
                )
        if not 2 * self.probe_timeout < self.probe_interval:
            raise ConfigError(
                "membership.probe_timeout: must be under half of probe_interval "
                f"({self.probe_timeout!r} vs {self.probe_interval!r}), or nacks from indirect "
                "probes arrive after the probe period has ended",
                key="membership.probe_timeout",
            )


def lan() -> MembershipConfig:
    """The default profile: a home LAN or loopback, tuned for sub-second coordination."""
    return MembershipConfig()


def local() -> MembershipConfig:
    """A faster profile for clusters on one quiet machine (tests, development).

    On a loaded host (many nodes sharing two cores) scheduling delays of tens of milliseconds
    are common; use ``lan()`` there, whose timeouts leave more room.
    """
    return MembershipConfig(
        probe_interval=0.05,
        probe_timeout=0.02,
        suspicion_mult=3,
        retransmit_mult=3,
        gossip_interval=0.02,
        gossip_to_the_dead_time=1.0,
        push_pull_interval=5.0,
        reconnect_interval=0.5,
        tombstone_time=600.0,
        join_retry_interval=0.25,
    )


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times a node sends one piece of news in a cluster of ``n`` nodes (memberlist)."""
    return retransmit_mult * math.ceil(math.log10(max(n, 1) + 1))


def suspicion_timeout(suspicion_mult: int, n: int, probe_interval: float) -> float:
    """Minimum suspicion timeout for a cluster of ``n`` nodes (memberlist's formula).

    It grows with log10(n) because news needs about that many gossip rounds to reach everyone,
    and the suspected node must hear it and have its refutation heard in that time.
    """
    node_scale = max(1.0, math.log10(max(1, n)))
    return suspicion_mult * node_scale * probe_interval


def push_pull_scale(interval: float, n: int) -> float:
    """Push-pull interval for ``n`` nodes: doubled per doubling of n beyond 32 (memberlist)."""
    if n <= _PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(_PUSH_PULL_SCALE_THRESHOLD)) + 1
    return interval * multiplier


def detection_bound(config: MembershipConfig, n: int) -> float:
    """Worst-case seconds from a node's death until every other live node has marked it dead.

    The bound needs nothing from gossip: every live node probes every member itself, and news
    from others (a suspicion started earlier, a confirmation, a dead message) only ends the
    suspicion sooner. Its three terms are:

    - ``(n - 1) * probe_interval``: each node probes the other ``n - 1`` members in a fixed
      random order, so a member is probed at least once in any ``n - 1`` consecutive periods;
    - ``probe_interval``: the probe period itself (direct ping, then ping-req through others);
      the target is suspected when it ends without an ack;
    - ``suspicion_max_timeout_mult * suspicion_timeout(...)``: the suspicion timeout with no
      confirmations from other members (Lifeguard only shortens it).

    Assumptions: the ``n`` nodes (the dead one included) were a stable, converged cluster, no
    messages between live nodes are lost, live nodes are healthy (local health multiplier 1)
    and the driver calls ``tick`` when ``next_deadline`` says. Loss stretches it only if it also
    makes live nodes miss nacks (their probe periods stretch) and gossip fails to help.

    Raises:
        ValueError: for fewer than two nodes.
    """
    if n < 2:
        raise ValueError(f"detection_bound: need at least 2 nodes, got {n}")
    first_probe = (n - 1) * config.probe_interval
    probe_period = config.probe_interval
    suspicion = config.suspicion_max_timeout_mult * suspicion_timeout(
        config.suspicion_mult, n, config.probe_interval
    )
    return first_probe + probe_period + suspicion
