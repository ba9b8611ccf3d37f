"""The Raft core's shared state and the helpers every concern uses. No I/O.

The concerns (election, replication, snapshots, membership changes) are mixins over this base,
so that each lives in its own module while ``Raft`` stays one object with one ``handle``.

Persistence is buffered here: changes to the term, vote and log accumulate until the next
action that may depend on them, which is then preceded by one ``Persist`` (see ``_events``).
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections import Counter

from bzzz_edge.consensus._config import RaftConfig
from bzzz_edge.consensus._events import Action, Persist, RoleChanged, Send, State
from bzzz_edge.consensus._log import RaftLog
from bzzz_edge.consensus._messages import Entry, Message, Snapshot

__all__ = ["CoreState", "Progress", "ProgressState"]

_log = logging.getLogger(__name__)


# Refusals a leader answers with a probe at once, per follower and heartbeat interval.
QUICK_PROBES = 4


class ProgressState(enum.Enum):
    PROBE = "probe"  # one append at a time until the follower's log position is known
    REPLICATE = "replicate"  # appends pipelined, up to max_inflight
    SNAPSHOT = "snapshot"  # an InstallSnapshot is on its way


class Progress:
    """What a leader knows of one follower's log. One per member, so bounded by the config."""

    __slots__ = ("beat_at", "heard_at", "inflight", "match", "next", "quick", "quick_since",
                 "sent_at", "snapshot_at", "snapshot_index", "state")

    def __init__(self, next_index: int, now: float) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.inflight: list[int] = []  # last index of each append in flight (REPLICATE)
        self.sent_at = -math.inf  # when the last probe or snapshot went out
        self.heard_at = now  # a new leader gives every voter one check-quorum period
        self.beat_at = -math.inf  # when the last heartbeat went out (learners get fewer)
        self.snapshot_at = -math.inf  # when the last snapshot went out
        self.snapshot_index = 0  # the index of that snapshot
        self.quick, self.quick_since = 0, -math.inf  # probes sent at once on a refusal

    def quick_probe(self, now: float, interval: float) -> bool:
        """Whether a refusal may be answered with a probe at once: up to ``QUICK_PROBES`` in an
        ``interval`` (the heartbeat's), paced after that. An honest follower backs a leader
        up in a round trip or two (its refusals carry a hint); a member that sends refusals
        without end must not get an append (or a snapshot) for each."""
        if now - self.quick_since >= interval:
            self.quick, self.quick_since = 0, now
        self.quick += 1
        return self.quick <= QUICK_PROBES

    def keeps_up(self, commit: int, now: float, patience: float) -> bool:
        """Whether the follower holds everything up to ``commit``, or was sent all of it in step
        and answered within ``patience`` seconds. A learner is sent entries once committed, so
        under a steady stream of commits its answer to the latest is always on its way: by
        ``match`` alone it would never count as caught up (and never be promoted) until the
        stream stops."""
        return self.match >= commit or (self.state is ProgressState.REPLICATE
                                         and self.next > commit and now - self.heard_at <= patience)


class CoreState:
    """Fields and helpers shared by the Raft mixins."""

    _id: bytes
    _cfg: RaftConfig
    _rng: random.Random
    _counters: Counter[str]
    _out: list[Action]
    _term: int
    _vote: bytes | None
    _state: State
    _leader: bytes | None
    _log: RaftLog
    _snapshot: Snapshot | None
    _commit: int
    _applied: int
    _election_at: float | None
    _heard_leader_at: float
    _voted_at: float  # when we last gave our vote to another candidate
    _answered: tuple[int, int, float] | None  # a follower's last yes: term, index, when
    _deferred: int  # a learner's appends taken since its last answer
    _votes: set[bytes]
    _progress: dict[bytes, Progress]
    _heartbeat_at: float | None
    _quorum_check_at: float | None
    _transfer_to: bytes | None
    _transfer_until: float
    _term_start: int
    _snapshot_asked: int | None
    # Persistence buffer.
    _hard_dirty: bool
    _new_entries: list[Entry]
    _truncate: int | None
    _compact: int | None
    _new_snapshot: Snapshot | None

    def caught_up(self, now: float) -> set[bytes]:
        """The members that keep up with the commit index (``Progress.keeps_up``), as the
        leader sees them (empty elsewhere): what a learner must be to be promoted.

        Patience, a quarter of the heartbeat interval, and for a learner a heartbeat interval
        more: in step under a stream of commits a voter answers each within a round trip, a
        learner one in ``_replication.LEARNER_ANSWERS_EVERY`` and the heartbeats while it owes
        answers; when commits stop, its ``match`` catches up. One not heard from for longer is
        not in step, whatever was sent to it."""
        cfg = self._cfg
        patience = cfg.heartbeat_interval / 4
        learners = self._log.config().learners
        return {node for node, p in self._progress.items()
                if p.keeps_up(self._commit, now, patience + cfg.heartbeat_interval
                              if node in learners else patience)}

    # --- persistence ----------------------------------------------------------------------------

    def _flush(self) -> None:
        """Emit one Persist for everything changed since the last one."""
        if not (self._hard_dirty or self._new_entries or self._truncate is not None
                or self._compact is not None or self._new_snapshot is not None):
            return
        self._out.append(Persist(self._term, self._vote, tuple(self._new_entries),
                                 self._truncate, self._compact, self._new_snapshot))
        self._hard_dirty = False
        self._new_entries = []
        self._truncate = self._compact = None
        self._new_snapshot = None

    def _emit(self, action: Action) -> None:
        """Queue ``action`` after a Persist of everything it may depend on."""
        self._flush()
        self._out.append(action)

    def _send(self, to: bytes, message: Message) -> None:
        self._emit(Send(to, message))

    def _set_term(self, term: int, vote: bytes | None) -> None:
        if term != self._term or vote != self._vote:
            self._term, self._vote = term, vote
            self._hard_dirty = True

    def _append_local(self, entry: Entry) -> None:
        self._log.append(entry)
        self._new_entries.append(entry)

    def _truncate_local(self, index: int) -> None:
        self._flush()  # earlier appends, then this truncation: the order the store sees
        self._log.truncate_from(index)
        self._truncate = index

    # --- roles and timers -----------------------------------------------------------------------

    def _followers(self) -> list[bytes]:
        """The members a leader replicates to, voters first: they make the commit, so their
        appends leave (and their hosts wake) before the learners'."""
        voters = self._log.config().voters
        return sorted(self._progress, key=lambda peer: (peer not in voters, peer))

    def _is_voter(self) -> bool:
        return self._id in self._log.config().voters

    def _reset_election_timer(self, now: float) -> None:
        cfg = self._cfg
        if self._is_voter():
            self._election_at = now + self._rng.uniform(cfg.election_timeout_min,
                                                        cfg.election_timeout_max)
        else:
            self._election_at = None  # learners and non-members never campaign

    def _role_changed(self) -> None:
        # A notification, not something a peer sees: it need not wait for a Persist (and not
        # flushing here saves a sync when a vote follows a new term at once).
        self._out.append(RoleChanged(self._state, self._term, self._leader))

    def _become_follower(self, term: int, leader: bytes | None, now: float) -> None:
        old = (self._state, self._term, self._leader)
        if term > self._term:
            self._set_term(term, None)
        self._state = State.FOLLOWER
        self._leader = leader
        self._votes = set()
        self._progress = {}
        self._heartbeat_at = self._quorum_check_at = None
        self._transfer_to = None
        self._reset_election_timer(now)
        if old != (self._state, self._term, self._leader):
            if old[0] is State.LEADER:
                _log.info("raft: stepped down in term %d", old[1])
            self._role_changed()

    def _in_lease(self, now: float) -> bool:
        """Whether we heard from a live leader within the minimum election timeout."""
        if self._state is State.LEADER:
            return True
        return (self._leader is not None
                and now - self._heard_leader_at < self._cfg.election_timeout_min)

    # --- provided by the concern mixins -----------------------------------------------------

    def _become_leader(self, now: float) -> None:
        raise NotImplementedError

    def _replicate(self, peer: bytes, now: float, *, heartbeat: bool = False) -> None:
        raise NotImplementedError

    def _maybe_commit(self) -> None:
        raise NotImplementedError

    def _send_new_entries(self, now: float) -> None:
        raise NotImplementedError

    def _apply_committed(self) -> None:
        raise NotImplementedError

    def _config_changed(self, now: float) -> None:
        raise NotImplementedError

    def _maybe_hand_over(self, now: float) -> None:
        raise NotImplementedError
