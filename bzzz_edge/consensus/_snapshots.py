"""Raft snapshots and log compaction. No I/O.

Every ``snapshot_threshold`` applied entries the core asks the shell for the state machine's
bytes (``TakeSnapshot(index)``); the shell answers with ``SnapshotTaken(index, data)``, and the
core stores the snapshot (with the term and configuration at that index) and compacts the log
up to ``index - snapshot_trailing``: the log holds at most about ``snapshot_threshold +
snapshot_trailing`` applied entries plus the uncommitted ones (``max_pending_proposals``).

A follower whose next entry was compacted away gets ``InstallSnapshot``, whole (the state
machines here are small; ``max_snapshot_bytes`` bounds what a follower accepts). If it already
holds the snapshot's last entry it keeps its log and just commits up to it; otherwise it
discards its log, stores the snapshot and restores its state machine from it.
"""

from __future__ import annotations

import math

from bzzz_edge.consensus._events import RestoreSnapshot, State
from bzzz_edge.consensus._messages import InstallSnapshot, Snapshot, SnapshotResponse
from bzzz_edge.consensus._state import CoreState, ProgressState
from bzzz_edge.errors import LocalProtocolError

__all__ = ["SnapshotMixin"]


class SnapshotMixin(CoreState):
    def _on_snapshot_taken(self, index: int, data: bytes) -> None:
        """Store the shell's snapshot at ``index`` and compact the log behind it.

        Raises:
            LocalProtocolError: ``index`` is not applied yet or not after the last snapshot.
        """
        current = self._snapshot.index if self._snapshot is not None else 0
        if not current < index <= self._applied:
            if index <= current:
                self._snapshot_asked = None
                return  # a snapshot installed from the leader overtook this one
            raise LocalProtocolError(f"raft: snapshot at {index} but applied {self._applied}")
        term = self._log.term_at(index)
        if term is None:
            raise LocalProtocolError(f"raft: snapshot at compacted index {index}")
        self._flush()
        snap = Snapshot(index, term, self._log.config_at(index), data)
        self._snapshot = self._new_snapshot = snap
        self._snapshot_asked = None
        through = index - self._cfg.snapshot_trailing
        if through > self._log.base_index:
            self._log.compact_through(through)
            self._compact = through
        self._flush()

    def _on_install_snapshot(self, sender: bytes, msg: InstallSnapshot, now: float) -> None:
        if self._state is not State.FOLLOWER or self._leader != sender:
            self._become_follower(msg.term, sender, now)
        self._heard_leader_at = now
        self._reset_election_timer(now)
        self._answered = None  # the leader lost our position: answer its next probe at once
        snap = msg.snapshot
        if snap.index <= self._commit:
            self._send(sender, SnapshotResponse(self._term, self._commit))
            return
        if self._log.term_at(snap.index) == snap.term:
            self._commit = snap.index  # we hold it all: commit it the usual way
            self._apply_committed()
        else:
            self._flush()
            self._log.reset(snap.index, snap.term, snap.config)
            self._snapshot = self._new_snapshot = snap
            self._truncate = 0
            self._commit = self._applied = snap.index
            self._snapshot_asked = None
            self._counters["snapshots_installed"] += 1
            self._emit(RestoreSnapshot(snap))
            self._config_changed(now)
        self._send(sender, SnapshotResponse(self._term, snap.index))

    def _on_snapshot_response(self, sender: bytes, msg: SnapshotResponse, now: float) -> None:
        pr = self._progress.get(sender)
        if self._state is not State.LEADER or pr is None:
            return
        pr.heard_at = now
        if msg.index > self._log.last_index or pr.state is not ProgressState.SNAPSHOT:
            return  # answers no snapshot on its way (a late or an unasked one): no probe for it
        if msg.index > pr.match:
            pr.match = msg.index
            self._maybe_commit()
        if msg.index >= pr.snapshot_index:
            # It holds the snapshot sent: if the log was compacted past it meanwhile, the next
            # one may go at once (the pacing is for answers that do not say so; a member can
            # earn another snapshot this way only each time the leader takes a new one).
            pr.snapshot_at = -math.inf
        pr.state = ProgressState.PROBE
        pr.next = pr.match + 1
        pr.inflight = []
        pr.sent_at = -1e18
        self._replicate(sender, now)
