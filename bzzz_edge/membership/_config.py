"""Membership timing profiles and the pure arithmetic behind them. No I/O.

Like hashicorp/memberlist, the tunables live in one frozen record with presets (``lan()``, the
default, and ``local()`` for clusters on one machine), and the arithmetic (retransmit limit,
suspicion timeout, push-pull scaling, the failure-detection bound) lives in small pure functions
so that it can be tested and quoted on its own.

Why these defaults: bzzz-edge runs on home networks, wired, Wi-Fi and powerline, on busy
Raspberry Pis. A false death costs far more than a slow detection (it triggers an election or
a task reassignment), so nothing here is a fixed timeout tuned for a quiet wired LAN: probe
timeouts follow each peer's measured round trips (``_rtt``), a node that runs late or misses
acks stretches its own timing (Lifeguard local health), and suspicions last at least a few of
the suspect's probe timeouts. One probe every 250 ms keeps an idle six-node cluster at a few
small messages a second per node. ``detection_bound(lan(), n, rto)`` gives the worst case for
a given probe timeout; the README tabulates it per round-trip time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from bzzz_edge.errors import ConfigError

__all__ = [
    "MIN_MESSAGE_BYTES",
    "PROFILES",
    "MembershipConfig",
    "detection_bound",
    "lan",
    "local",
    "min_suspicion_timeout",
    "probe_period",
    "profile",
    "push_pull_scale",
    "retransmit_limit",
    "suspicion_timeout",
]

# Above this many nodes push-pull syncs slow down (memberlist's pushPullScaleThreshold).
_PUSH_PULL_SCALE_THRESHOLD = 32


#: The smallest message budget that fits one member record with the largest metadata.
MIN_MESSAGE_BYTES = 8192


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Tunables of the SWIM membership core; times are in seconds.

    Attributes:
        probe_interval: one member is probed per interval (round robin).
        probe_timeout_min: lower bound of a peer's probe timeout, which is otherwise derived
            from its measured round trips (SRTT + 4 RTTVAR, see ``_rtt``); a ping-req relay
            waits as long before it answers with a nack.
        probe_timeout_max: upper bound of that timeout.
        probe_timeout_initial: the timeout for a peer not measured yet.
        indirect_checks: members asked to probe a target that missed its direct ack.
        suspicion_mult: the shortest suspicion in ``suspicion_base`` units (scaled by log10 of
            the cluster size); ``suspicion_mult - 2`` independent confirmations bring a
            suspicion down to it (Lifeguard).
        suspicion_base: the unit of the shortest suspicion, in seconds. memberlist uses the
            probe interval; it is separate here so that probing less often (an idle node's main
            cost) does not also make a suspected node wait longer to be declared dead.
        suspicion_max_timeout_mult: the suspicion timeout starts at this multiple of the minimum
            and shrinks towards the minimum as other members independently confirm (Lifeguard).
        suspicion_rto_mult: the minimum suspicion timeout is at least this many probe timeouts
            of the suspected member, so that on a slow link its refutation has time to arrive.
        retransmit_mult: each piece of news is sent ``retransmit_mult * ceil(log10(n + 1))``
            times by every node that learns it.
        gossip_interval: how often queued news is pushed to ``gossip_nodes`` random members.
        gossip_nodes: fanout of each gossip round.
        gossip_to_the_dead_time: dead members still receive gossip for this long, so one that
            was declared dead by mistake hears about it and refutes.
        max_piggyback: most updates carried by one message.
        awareness_max_multiplier: a node that misses acks and nacks, runs its timers late or
            has to refute (Lifeguard local health) stretches its probe interval and timeouts up
            to this factor.
        late_timer_threshold: a timer that fires this much later than asked counts as a sign
            of a starved event loop: probe and suspicion verdicts due meanwhile are put off
            until the messages that queued up have been read.
        push_pull_interval: full state exchange with a random member (anti-entropy), scaled up
            for clusters of more than 32 nodes.
        reconnect_interval: a full state exchange is attempted with a random dead member this
            often, which is how the two sides of a healed partition find each other again.
        tombstone_time: dead and departed members are remembered (and dead ones retried) this
            long, so stale news cannot resurrect them; then they are forgotten.
        join_retry_interval: an unanswered join (full-state exchange) is retried this often...
        join_attempts: ...this many times in all, unless the node turns up alive meanwhile.
        max_members: most members remembered (this node included).
        max_unverified_members: most members remembered that never sent us anything
            themselves (known only from others' news).
        unverified_member_ttl: such a member is forgotten this long after we learnt of it,
            unless it has been heard from meanwhile (the limit stretches with cluster size).
        max_table_bytes: most bytes (as encoded) of member records held.
        max_message_bytes: most bytes (as encoded) of one membership message we build; larger
            full-state exchanges are split, piggybacked news truncated.
    """

    probe_interval: float = 0.5
    probe_timeout_min: float = 0.05
    probe_timeout_max: float = 3.0
    probe_timeout_initial: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 5
    suspicion_base: float = 0.25
    suspicion_max_timeout_mult: int = 4
    suspicion_rto_mult: int = 3
    retransmit_mult: int = 4
    gossip_interval: float = 0.1
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 5.0
    max_piggyback: int = 16
    awareness_max_multiplier: int = 8
    late_timer_threshold: float = 0.1
    push_pull_interval: float = 15.0
    reconnect_interval: float = 2.0
    tombstone_time: float = 3600.0
    join_retry_interval: float = 1.0
    join_attempts: int = 5
    max_members: int = 1024
    max_unverified_members: int = 256
    unverified_member_ttl: float = 60.0
    max_table_bytes: int = 4 * 1024 * 1024
    max_message_bytes: int = 64 * 1024

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
        if not self.probe_timeout_min <= self.probe_timeout_initial <= self.probe_timeout_max:
            raise ConfigError(
                "membership.probe_timeout_initial: must lie between probe_timeout_min and "
                f"probe_timeout_max ({self.probe_timeout_min!r} <= "
                f"{self.probe_timeout_initial!r} <= {self.probe_timeout_max!r})",
                key="membership.probe_timeout_initial",
            )
        if self.max_message_bytes < MIN_MESSAGE_BYTES:
            raise ConfigError(
                f"membership.max_message_bytes: at least {MIN_MESSAGE_BYTES} needed to carry "
                f"one member with full metadata, got {self.max_message_bytes!r}",
                key="membership.max_message_bytes",
            )


def lan() -> MembershipConfig:
    """The default profile: wired and wireless home networks alike.

    Probe timeouts follow each peer's measured round trip, so one profile serves a wired LAN
    (timeouts at the 50 ms floor, a kill -9 detected in under a second thanks to the closed
    connection) and Wi-Fi or slow links (timeouts of several hundred milliseconds, detection in
    a few seconds) without false deaths. One probe every 500 ms keeps an idle node cheap: probing
    is most of an idle node's messages, and a killed node is found through its closed connections
    rather than by the next probe.
    """
    return MembershipConfig()


def local() -> MembershipConfig:
    """A faster profile for clusters on one quiet machine (tests, development).

    On a loaded host (many nodes sharing two cores) scheduling delays of tens of milliseconds
    are common; the measured round trips and local health absorb some of it, ``lan()`` more.
    """
    return MembershipConfig(
        probe_interval=0.05,
        suspicion_base=0.05,
        probe_timeout_min=0.02,
        probe_timeout_max=0.5,
        probe_timeout_initial=0.1,
        suspicion_mult=3,
        retransmit_mult=3,
        gossip_interval=0.02,
        gossip_to_the_dead_time=1.0,
        late_timer_threshold=0.05,
        push_pull_interval=5.0,
        reconnect_interval=0.5,
        tombstone_time=600.0,
        join_retry_interval=0.25,
    )


PROFILES = {"lan": lan, "local": local}


def profile(name: str, overrides: Mapping[str, object] | None = None) -> MembershipConfig:
    """The named profile with individual keys replaced (the ``membership.*`` config keys).

    Raises:
        ConfigError: an unknown profile or key, or a value out of range; it names the key.
    """
    if name not in PROFILES:
        raise ConfigError(f"node.profile: unknown profile {name!r}", key="node.profile")
    base = PROFILES[name]()
    known = {f.name for f in fields(base)}
    for key in overrides or {}:
        if key not in known:
            raise ConfigError(f"membership.{key}: no such setting", key=f"membership.{key}")
    return replace(base, **dict(overrides or {}))  # type: ignore[arg-type]


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times a node sends one piece of news in a cluster of ``n`` nodes (memberlist)."""
    return retransmit_mult * math.ceil(math.log10(max(n, 1) + 1))


def suspicion_timeout(suspicion_mult: int, n: int, base: float) -> float:
    """Minimum suspicion timeout for a cluster of ``n`` nodes (memberlist's formula, with
    ``base`` where memberlist has the probe interval).

    It grows with log10(n) because news needs about that many gossip rounds to reach everyone,
    and the suspected node must hear it and have its refutation heard in that time.
    """
    node_scale = max(1.0, math.log10(max(1, n)))
    return suspicion_mult * node_scale * base


def push_pull_scale(interval: float, n: int) -> float:
    """Push-pull interval for ``n`` nodes: doubled per doubling of n beyond 32 (memberlist)."""
    if n <= _PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(_PUSH_PULL_SCALE_THRESHOLD)) + 1
    return interval * multiplier


def probe_period(rto: float) -> float:
    """Longest probe of a member whose probe timeout is ``rto``, healthy node: the direct ping,
    then the ping-req round (a relay's own timeout for the target, plus the way back)."""
    return 3 * rto


def min_suspicion_timeout(config: MembershipConfig, n: int, rto: float) -> float:
    """The shortest suspicion of a member with probe timeout ``rto`` in a cluster of ``n``:
    memberlist's log10(n) scaling, but never less than ``suspicion_rto_mult`` probe timeouts,
    so a member on a slow link has time to hear the suspicion and have its refutation heard."""
    return max(
        suspicion_timeout(config.suspicion_mult, n, config.suspicion_base),
        config.suspicion_rto_mult * rto,
    )


def detection_bound(config: MembershipConfig, n: int, rto: float | None = None) -> float:
    """Worst-case seconds from a node's death until every other live node has marked it dead.

    ``rto`` is the dead node's probe timeout as the others measured it (by default the floor,
    ``probe_timeout_min``: a wired LAN, where round trips are well under a millisecond).

    The bound needs nothing from gossip: every live node probes every member itself, and news
    from others (a suspicion started earlier, a confirmation, a dead message) only ends the
    suspicion sooner. Its three terms are:

    - ``(n - 1) * probe_interval``: each node probes the other ``n - 1`` members in a fixed
      random order, so a member is probed at least once in any ``n - 1`` consecutive periods;
    - ``probe_period(rto)``: the probe itself (direct ping, then ping-req through others);
      the target is suspected when it ends without an ack;
    - ``suspicion_max_timeout_mult * min_suspicion_timeout(...)``: the suspicion timeout with
      no confirmations from other members (Lifeguard only shortens it).

    Assumptions: the ``n`` nodes (the dead one included) were a stable, converged cluster, no
    messages between live nodes are lost, live nodes are healthy (local health multiplier 1)
    and the driver calls ``tick`` when ``next_deadline`` says. Loss stretches it only if it also
    makes live nodes miss nacks (their probe periods stretch) and gossip fails to help.

    Raises:
        ValueError: for fewer than two nodes.
    """
    if n < 2:
        raise ValueError(f"detection_bound: need at least 2 nodes, got {n}")
    rto = config.probe_timeout_min if rto is None else rto
    first_probe = (n - 1) * config.probe_interval
    suspicion = config.suspicion_max_timeout_mult * min_suspicion_timeout(config, n, rto)
    return first_probe + probe_period(rto) + suspicion
