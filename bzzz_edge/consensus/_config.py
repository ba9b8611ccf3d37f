"""Raft timing and size presets. No I/O.

Why the ``lan`` numbers: the target is a new leader within 1 s of a kill -9 of the old one, on
home networks where a Raspberry Pi's event loop may run 50-100 ms late now and then.

- ``heartbeat_interval`` 50 ms: a follower hears from its leader 6 to 12 times per election
  timeout, so losing one or two heartbeats (a busy Pi, Wi-Fi retransmits) never starts an
  election; 20 small messages a second per follower is nothing on a LAN.
- ``election_timeout`` 300-600 ms: Ongaro's rule is broadcast time << election timeout << MTBF;
  300 ms is six heartbeats, comfortably above a late timer, and the 300 ms spread makes split
  votes rare (the first follower to time out usually wins its pre-vote and vote in a couple of
  round trips, a few ms on a LAN, long before the next one times out). Worst case after a
  kill -9: the last heartbeat just arrived, so the first election starts 300-600 ms later and
  ends a few ms after; a split vote costs one more timeout (at most another 600 ms), hence
  0.3-0.6 s typical (the first of four followers to time out: a median of about 0.35 s over
  seeded kills in the simulator, ``benchmarks/bench_raft_sim.py``) and under 1.3 s with one
  split. The membership hook (``LeaderDead``)
  starts the election as soon as SWIM declares the leader dead, when that comes first.
- check-quorum runs every ``election_timeout_min``: a leader that has not heard from a
  majority for that long steps down, before followers on the other side elect a new one.
- pre-vote voters refuse while they heard from a leader within ``election_timeout_min``.

Sizes bound what one peer can make us hold: entries per message, bytes per command, bytes per
snapshot, entries a follower may have in flight, and the log length (a snapshot is asked of
the shell every ``snapshot_threshold`` applied entries; ``snapshot_trailing`` entries are kept
after it for followers slightly behind).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bzzz_edge.consensus._messages import Limits
from bzzz_edge.errors import ConfigError

__all__ = ["RaftConfig", "lan", "local"]


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Tunables of the Raft core; times in seconds. See the module docstring for the reasons.

    Attributes:
        heartbeat_interval: how often a leader sends appends to idle followers.
        election_timeout_min, election_timeout_max: a follower that hears nothing from a leader
            for a random time in this range starts an election.
        pre_vote: poll voters before raising the term (a returning partitioned node does not
            disrupt the cluster).
        check_quorum: a leader steps down when it has not heard from a majority for
            ``election_timeout_min``.
        max_entries_per_message, max_bytes_per_message: one append's batch.
        max_inflight: appends in flight to one follower at a time (pipelining).
        max_command_bytes: the largest command accepted, from the shell or a peer.
        max_snapshot_bytes: the largest snapshot accepted from a peer.
        max_pending_proposals: entries appended but not committed before proposals are
            refused (back pressure).
        snapshot_threshold: applied entries after which a snapshot is requested.
        snapshot_trailing: entries kept in the log after a snapshot.
        transfer_timeout: a leadership transfer not done by then is abandoned.
    """

    heartbeat_interval: float = 0.05
    election_timeout_min: float = 0.3
    election_timeout_max: float = 0.6
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_message: int = 512
    max_bytes_per_message: int = 1024 * 1024
    max_inflight: int = 64
    max_command_bytes: int = 65536
    max_snapshot_bytes: int = 64 * 1024 * 1024
    max_pending_proposals: int = 4096
    snapshot_threshold: int = 8192
    snapshot_trailing: int = 1024
    transfer_timeout: float = 0.6

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval < self.election_timeout_min:
            raise ConfigError("raft: need 0 < heartbeat_interval < election_timeout_min")
        if not self.election_timeout_min < self.election_timeout_max:
            raise ConfigError("raft: need election_timeout_min < election_timeout_max")
        for name in ("max_entries_per_message", "max_inflight", "max_pending_proposals",
                     "snapshot_threshold", "max_command_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"raft: {name} must be at least 1", key=name)
        if not 1 <= self.max_entries_per_message <= 1024:
            raise ConfigError("raft: max_entries_per_message must be 1 to 1024")
        if self.snapshot_trailing < 0 or self.transfer_timeout <= 0:
            raise ConfigError("raft: snapshot_trailing >= 0 and transfer_timeout > 0 needed")
        if self.max_bytes_per_message < self.max_command_bytes + 1024:
            raise ConfigError("raft: max_bytes_per_message must fit the largest command")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_entries_per_message, self.max_command_bytes,
                      self.max_snapshot_bytes)


def lan(**overrides: object) -> RaftConfig:
    """The default: failover within about a second on a home LAN (see the module docstring)."""
    return replace(RaftConfig(), **overrides)  # type: ignore[arg-type]


def local(**overrides: object) -> RaftConfig:
    """Nodes on one machine: ten times faster timers."""
    base = RaftConfig(heartbeat_interval=0.01, election_timeout_min=0.06,
                      election_timeout_max=0.12, transfer_timeout=0.12)
    return replace(base, **overrides)  # type: ignore[arg-type]
