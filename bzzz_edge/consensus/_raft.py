"""The Raft core: one node's consensus state machine behind handle/tick/next_deadline. No I/O.

``Raft`` combines the concerns (``_election``, ``_replication``, ``_snapshots``, ``_changes``)
over the shared state of ``_state``. The shell feeds it events and timer ticks and performs
the actions it returns, in order, completing each ``Persist`` before the next action (the
contract is spelled out in ``_events``).

Messages from peers go through ``decode_message`` first. Whatever a peer sends, ``handle``
never raises: a malformed or oversized message (``malformed``), a message from an older term
(``stale_term``, answered with our term so an old leader learns it is deposed), a response
from a node that is not a member (``non_member``) and a message that breaks the protocol
(``protocol_errors``) are refused and counted in ``counters``. Vote requests from nodes that
are not voters in our configuration are counted (``votes_from_non_voters``) and refused while
we hear from a leader (``votes_refused_in_lease``; see ``_election``); appends and
snapshots are taken from any leader of a current term, member or not, because a node that
joins, or lags behind a configuration change, learns its configuration from them (Raft does
not defend against a peer that holds the network key and claims a leadership it never won;
the transport's authentication is what keeps outsiders out). What a peer can make the core
hold is bounded by the configuration: one ``Progress`` per member, at most ``max_inflight``
appends in flight per follower, a log compacted after every snapshot.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from bzzz_edge.consensus._changes import ChangesMixin
from bzzz_edge.consensus._config import RaftConfig, lan
from bzzz_edge.consensus._election import ElectionMixin
from bzzz_edge.consensus._events import (
    Accepted,
    Action,
    ChangeMember,
    Event,
    LeaderLost,
    Persisted,
    Propose,
    ProposeMany,
    Received,
    Rejection,
    SnapshotTaken,
    State,
    TransferLeadership,
)
from bzzz_edge.consensus._log import RaftLog
from bzzz_edge.consensus._messages import (
    EMPTY_CONFIGURATION,
    NODE_ID_LEN,
    AppendEntries,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshot,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    decode_message,
)
from bzzz_edge.consensus._replication import ReplicationMixin
from bzzz_edge.consensus._snapshots import SnapshotMixin
from bzzz_edge.consensus._storage import Stored
from bzzz_edge.errors import DecodeError, LocalProtocolError, RemoteProtocolError, StorageError
from bzzz_edge.ids import short_id

__all__ = ["PeerProgress", "Raft"]

_log = logging.getLogger(__name__)

_RESPONSES = (VoteResponse, AppendResponse, SnapshotResponse)


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """A leader's view of one member's replication."""

    match: int
    next: int
    state: str
    voter: bool


class Raft(ElectionMixin, ReplicationMixin, SnapshotMixin, ChangesMixin):
    """One Raft node. See the module docstring.

    Args:
        node_id: this node's ID (32 bytes).
        now: the current time on the shell's monotonic clock.
        config: timing and limits; ``lan()`` when omitted.
        stored: what the node made durable before (``Stored()`` on first start).
        bootstrap: the initial configuration, used only while nothing stored says otherwise;
            every founding node gets the same one (a lone node: ``{itself}``), a node joining
            later gets None and learns the configuration from the leader.
        rng: randomness for election timeouts; pass a seeded one for reproducible runs.
        write_behind: the shell may finish a leader's entry writes in the background and
            report them with ``Persisted`` (``_events``); the leader counts its own copy only
            once reported.

    Raises:
        LocalProtocolError: a bad argument. StorageError: ``stored`` is not a contiguous log.
    """

    def __init__(self, node_id: bytes, *, now: float, config: RaftConfig | None = None,
                 stored: Stored | None = None, bootstrap: Configuration | None = None,
                 rng: random.Random | None = None, write_behind: bool = False) -> None:
        if not isinstance(node_id, bytes) or len(node_id) != NODE_ID_LEN:
            raise LocalProtocolError(f"raft: node_id must be {NODE_ID_LEN} bytes")
        stored = stored if stored is not None else Stored()
        self._id = node_id
        self._cfg = config if config is not None else lan()
        self._rng = rng if rng is not None else random.Random()
        self._counters = Counter()
        self._out = []
        self._term, self._vote = stored.term, stored.vote
        self._state, self._leader = State.FOLLOWER, None
        snap = self._snapshot = stored.snapshot
        if snap is not None:
            self._log = RaftLog(snap.index, snap.term, snap.config)
        else:
            self._log = RaftLog(0, 0, bootstrap or EMPTY_CONFIGURATION)
        for entry in stored.entries:
            if entry.index <= self._log.base_index:
                continue
            if entry.index != self._log.last_index + 1:
                raise StorageError(f"raft store: entry {entry.index} after {self._log.last_index}")
            self._log.append(entry)
        self._commit = self._applied = self._log.base_index
        self._heard_leader_at = self._voted_at = -math.inf
        self._answered = None
        self._deferred = 0
        self._votes, self._progress = set(), {}
        self._commit_sent = {}
        self._write_behind = write_behind
        self._durable = self._log.last_index  # our own log is durable through here
        self._heartbeat_at = self._quorum_check_at = None
        self._transfer_to, self._transfer_until = None, math.inf
        self._term_start = 0
        self._snapshot_asked = None
        self._hard_dirty = False
        self._new_entries = []
        self._truncate = self._compact = None
        self._new_snapshot = None
        self._election_at = None
        self._reset_election_timer(now)
        if self._log.config().voters == {self._id}:
            self._election_at = now  # the only voter: nobody else can lead, so do not wait

    # --- views ----------------------------------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        return self._id

    @property
    def state(self) -> State:
        return self._state

    @property
    def term(self) -> int:
        return self._term

    @property
    def leader(self) -> bytes | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def log_length(self) -> int:
        """Entries held in memory (the bound on the log)."""
        return len(self._log)

    @property
    def snapshot_index(self) -> int:
        return self._snapshot.index if self._snapshot is not None else 0

    @property
    def configuration(self) -> Configuration:
        return self._log.config()

    @property
    def counters(self) -> Mapping[str, int]:
        return MappingProxyType(self._counters)

    def log_entries(self) -> tuple[Entry, ...]:
        """The entries held (after the compaction point), for checkers and status."""
        return tuple(self._log.entry(i) for i in range(self._log.base_index + 1,
                                                      self._log.last_index + 1))

    def progress(self) -> dict[bytes, PeerProgress]:
        """Each member's replication progress, as the leader sees it (empty elsewhere)."""
        voters = self._log.config().voters
        return {node: PeerProgress(p.match, p.next, p.state.value, node in voters)
                for node, p in self._progress.items()}

    # --- driving --------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [t for t in (self._election_at, self._heartbeat_at, self._quorum_check_at)
                 if t is not None]
        if self._transfer_to is not None:
            times.append(self._transfer_until)
        return min(times) if times else None

    def tick(self, now: float) -> list[Action]:
        if self._election_at is not None and now >= self._election_at:
            self._on_election_timeout(now)
        due = self._quorum_check_at
        if self._state is State.LEADER and due is not None and now >= due:
            self._check_quorum(now)
        if self._state is State.LEADER:
            if self._transfer_to is not None and now >= self._transfer_until:
                self._counters["transfers_abandoned"] += 1
                self._transfer_to = None
            if self._heartbeat_at is not None and now >= self._heartbeat_at:
                self._heartbeat_at = now + self._cfg.heartbeat_interval
                self._broadcast(now, heartbeat=True)
        self._announce_commit(now)
        return self._take()

    def handle(self, event: Event, now: float) -> list[Action]:
        """Feed one event in; returns the actions to perform, in order.

        Raises:
            LocalProtocolError: the shell misused the core (never for what a peer sent).
        """
        if isinstance(event, Received):
            try:
                self._on_received(event.sender, event.payload, now)
            except RemoteProtocolError as exc:
                self._counters["protocol_errors"] += 1
                _log.debug("raft: protocol error from %s: %s", short_id(event.sender), exc)
        elif isinstance(event, Propose):
            self._on_propose(event, now)
        elif isinstance(event, ProposeMany):
            self._on_propose_many(event.proposals, now)
        elif isinstance(event, ChangeMember):
            self._on_change_member(event, now)
        elif isinstance(event, TransferLeadership):
            self._on_transfer(event, now)
        elif isinstance(event, LeaderLost):
            self._on_leader_lost(event.node, now)
        elif isinstance(event, SnapshotTaken):
            self._on_snapshot_taken(event.index, event.data)
        elif isinstance(event, Persisted):
            self._on_persisted(event.index, event.term)
        else:
            raise LocalProtocolError(f"raft: unknown event {type(event).__name__}")
        self._announce_commit(now)
        return self._take()

    def _take(self) -> list[Action]:
        self._flush()
        out, self._out = self._out, []
        return out

    # --- internals ------------------------------------------------------------------------------

    def _on_propose_many(self, proposals: tuple[Propose, ...], now: float) -> None:
        appended = False
        for event in proposals:
            reason = self._refusal()
            if reason is None and len(event.command) > self._cfg.max_command_bytes:
                reason = Rejection.TOO_LARGE
            if reason is not None:
                self._reject(event.ref, reason)
                continue
            entry = Entry(self._term, self._log.last_index + 1, EntryKind.COMMAND, event.command)
            self._append_local(entry)
            self._emit(Accepted(event.ref, entry.index, entry.term))
            appended = True
        if appended:
            self._send_new_entries(now)

    def _check_quorum(self, now: float) -> None:
        config = self._log.config()
        since = now - self._cfg.election_timeout_max
        progress = self._progress
        heard = sum(1 for v in config.voters
                    if v == self._id or (v in progress and progress[v].heard_at >= since))
        if heard < config.quorum():
            self._counters["check_quorum_step_downs"] += 1
            self._become_follower(self._term, None, now)
        else:
            self._quorum_check_at = now + self._cfg.election_timeout_min

    def _on_received(self, sender: bytes, payload: object, now: float) -> None:
        if sender == self._id:
            raise RemoteProtocolError("a message claims to come from this node")
        try:
            msg = decode_message(payload, self._cfg.limits)
        except DecodeError as exc:
            self._counters["malformed"] += 1
            _log.debug("raft: malformed message from %s: %s", short_id(sender), exc)
            return
        if isinstance(msg, RequestVote):
            self._on_request_vote(sender, msg, now)
            return
        if isinstance(msg, _RESPONSES) and sender not in self._log.config().members:
            self._counters["non_member"] += 1
            return
        if msg.term < self._term:
            self._counters["stale_term"] += 1
            if isinstance(msg, AppendEntries):
                self._send(sender, AppendResponse(self._term, False, self._log.last_index))
            elif isinstance(msg, InstallSnapshot):
                self._send(sender, SnapshotResponse(self._term, self._commit))
            return
        if msg.term > self._term:
            if isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
                pass  # a granted pre-vote names the term we would stand in
            elif isinstance(msg, AppendEntries | InstallSnapshot | TimeoutNow):
                self._become_follower(msg.term, sender, now)
            else:
                self._become_follower(msg.term, None, now)
                return
        self._dispatch(sender, msg, now)

    def _dispatch(self, sender: bytes, msg: object, now: float) -> None:
        if isinstance(msg, AppendEntries):
            self._on_append(sender, msg, now)
        elif isinstance(msg, AppendResponse):
            self._on_append_response(sender, msg, now)
        elif isinstance(msg, VoteResponse):
            self._on_vote_response(sender, msg, now)
        elif isinstance(msg, InstallSnapshot):
            self._on_install_snapshot(sender, msg, now)
        elif isinstance(msg, SnapshotResponse):
            self._on_snapshot_response(sender, msg, now)
        elif isinstance(msg, TimeoutNow):
            self._on_timeout_now(sender, msg, now)
