"""Raft timing and size presets. No I/O.

Why the ``lan`` numbers: a new leader within 1 s of a kill -9 of the old one, on home networks
where a Raspberry Pi's event loop may run 50-100 ms late now and then, and an idle cluster that
leaves a Pi's CPU alone (heartbeats are most of an idle node's messages).

- A kill -9 closes the leader's connections at once: every follower forgets it and starts an
  election within one ``heartbeat_interval`` at random (``LeaderLost``), so failover takes
  about the first of those delays plus two round trips and a sync, whatever the timeouts
  below. SWIM declaring the leader dead does the same where no connection closes (a power
  cut, a pulled cable). The timeouts are for what neither sees.
- ``heartbeat_interval`` 400 ms: 2.5 messages a second to each follower, which answers only
  every other one when it has nothing new to say (``answer_interval``: often enough that the
  leader hears each at least every second, half its check-quorum window); a leader with five
  followers handles about 19 messages a second when idle (at 250 ms with answers a third of
  the window apart it was 30, at 50 ms answering all 200, and most of an idle node's CPU).
  Commits do not wait for heartbeats: a leader sends appends as proposals come.
- ``election_timeout`` 1.0-2.0 s: 2.5 to 5 heartbeats, so losing one or two (a busy
  Pi, Wi-Fi retransmits, 30% loss) rarely starts an election, and when one follower's does, the
  voters that still hear the leader refuse its pre-vote; the 1 s spread makes split votes rare
  (the first follower to time out wins its pre-vote and vote in a few ms on a LAN). A silent
  death is therefore noticed after 1.0-2.0 s, or sooner when SWIM declares it.
- check-quorum: a leader that has not heard from a majority for ``election_timeout_max`` (five
  heartbeats, two answers of each follower) steps down; the followers on the other side elect
  a new leader after at least ``election_timeout_min``, and the old leader, unable to commit,
  steps down soon after. The longer window keeps lossy links from deposing a working leader.
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
            ``election_timeout_max``.
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

    heartbeat_interval: float = 0.4
    election_timeout_min: float = 1.0
    election_timeout_max: float = 2.0
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
            raise ConfigError(
                "coordination.heartbeat_interval: must be above 0 and below "
                f"election_timeout_min ({self.heartbeat_interval!r} vs "
                f"{self.election_timeout_min!r})", key="coordination.heartbeat_interval")
        if not self.election_timeout_min < self.election_timeout_max:
            raise ConfigError(
                "coordination.election_timeout_max: must be above election_timeout_min "
                f"({self.election_timeout_max!r} vs {self.election_timeout_min!r})",
                key="coordination.election_timeout_max")
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
    def answer_interval(self) -> float:
        """A follower in step answers heartbeats at most this often (0: every one): its
        answers then come at most half the check-quorum window apart, so the leader has heard
        from each twice in a window."""
        return max(0.0, self.election_timeout_max / 2 - self.heartbeat_interval)

    @property
    def limits(self) -> Limits:
        return Limits(self.max_entries_per_message, self.max_command_bytes,
                      self.max_snapshot_bytes)


def lan(**overrides: object) -> RaftConfig:
    """The default: fast failover and a quiet idle cluster on a home LAN (see the module
    docstring)."""
    return replace(RaftConfig(), **overrides)  # type: ignore[arg-type]


def local(**overrides: object) -> RaftConfig:
    """Nodes on one machine: ten times faster timers."""
    base = RaftConfig(heartbeat_interval=0.01, election_timeout_min=0.06,
                      election_timeout_max=0.12, transfer_timeout=0.12)
    return replace(base, **overrides)  # type: ignore[arg-type]
