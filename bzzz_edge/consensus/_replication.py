"""Raft log replication: a leader's appends and progress, a follower's checks, commit. No I/O.

The leader keeps one ``Progress`` per member (voters and learners; bounded by the
configuration). A follower whose position is unknown is probed with one append at a time; once
it acknowledges, appends are pipelined, at most ``max_inflight`` of them, each at most
``max_entries_per_message`` entries and about ``max_bytes_per_message``. A follower that
refuses an append answers with a hint (its last index, or the index before its conflicting
term), so the leader backs up a term at a time rather than an entry at a time. A follower too
far behind for the log gets the snapshot instead (``_snapshots``).

An entry is committed when a majority of the voters in the latest configuration hold it and it
is from the leader's current term (earlier terms' entries are committed with it, never by
counting replicas: the dissertation's figure 3.7). Learners never count, so they are sent
entries only once committed (``_sendable``), voters first. The leader's own copy counts because
its ``Persist`` precedes every later action; with write-behind (``_events``), only once the
shell reports it durable (``Persisted``).

Followers learn a new commit index at once, not at the next heartbeat: after every event that
advanced it, the leader sends each voter in step that was not sent it yet a commit notice, an
append without entries marked ``quiet``, which the follower answers only when it refuses it
(so a notice costs one small message, not a round trip), and each learner in step the entries
just committed, with the commit index (one message where a voter gets two). While entries
beyond the commit index are on their way (under load), a follower with appends in flight gets
none: the append that follows its answer carries the commit index. Followers being probed
learn it from the probe's successor, and everyone from the heartbeats.

A learner in step answers one append with entries in ``LEARNER_ANSWERS_EVERY`` (its
answers count toward nothing); while it owes answers the leader sends it every heartbeat,
which it answers, so the leader's view of it is at most a heartbeat interval old, and a
learner's patience in ``caught_up`` is a heartbeat interval longer than a voter's.

A follower in step answers a heartbeat only when it has something to say (a refusal, a new
index) or has not answered for ``answer_interval``: the leader needs to hear from it for its
check-quorum, not at every heartbeat. After a refusal the next probe is always answered.
"""

from __future__ import annotations

import logging

from bzzz_edge.consensus._events import Apply, State, TakeSnapshot
from bzzz_edge.consensus._messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
)
from bzzz_edge.consensus._state import CoreState, Progress, ProgressState
from bzzz_edge.errors import RemoteProtocolError

__all__ = ["ReplicationMixin"]

_log = logging.getLogger(__name__)

# A voter with fewer appends than this in flight, all of them of committed entries, is sent
# new entries at once. One proposer at a time: the proposal after a commit finds the two
# slowest voters of five still owing the previous answer; held back, the commit had to wait
# for the same two fastest voters (and the leader) every time, never for any two of four.
# Under load the appends in flight carry entries not committed yet: new ones wait, to travel
# together when the follower answers.
EAGER_INFLIGHT = 2
# A learner in step answers one append with entries in this many, and every heartbeat that
# finds it further on: it never counts toward a commit, so its answers only keep the leader's
# view of it current (flow control, the status, promotion), and the leader sends a learner
# that owes answers the regular heartbeats (``_learner_rests``). At ten nodes, five of them
# learners, five messages fewer per commit out of about twenty-two.
LEARNER_ANSWERS_EVERY = 8
# Appends a leader keeps in flight to a learner: a full round of unanswered ones and the
# next while the answer travels.
LEARNER_PIPELINE = 2 * LEARNER_ANSWERS_EVERY


class ReplicationMixin(CoreState):
    _commit_sent: dict[bytes, int]  # the commit index last sent to each follower (leader)
    _write_behind: bool  # the shell reports a leader's entry writes with Persisted
    _durable: int  # with write-behind: our own log is durable through here

    # --- leader ---------------------------------------------------------------------------------

    def _become_leader(self, now: float) -> None:
        self._state = State.LEADER
        self._leader = self._id
        self._election_at = None
        self._progress = {}
        self._commit_sent = {}
        self._sync_progress(now)
        self._heartbeat_at = now + self._cfg.heartbeat_interval
        self._quorum_check_at = (now + self._cfg.election_timeout_min
                                 if self._cfg.check_quorum else None)
        self._transfer_to = None
        self._role_changed()
        self._term_start = self._log.last_index + 1
        # What we hold as we win is durable: shells finish writes in the background only
        # while leader, and a candidate's own writes precede its vote requests.
        self._durable = self._log.last_index
        # The data names the leader: the task rules accept the coordinator's releases only from
        # the leader of their term (tasks/_machine.py).
        self._append_local(Entry(self._term, self._term_start, EntryKind.NOOP, self._id))
        self._broadcast(now)
        self._maybe_commit()

    def _sync_progress(self, now: float) -> None:
        """One Progress per member other than us, after the configuration changed."""
        members = self._log.config().members - {self._id}
        for gone in set(self._progress) - members:
            del self._progress[gone]
        for node in members - set(self._progress):
            self._progress[node] = Progress(self._log.last_index + 1, now)

    def _broadcast(self, now: float, *, heartbeat: bool = False) -> None:
        voters = self._log.config().voters
        for peer in self._followers():
            if heartbeat:
                pr = self._progress[peer]
                if peer not in voters and self._learner_rests(peer, pr, now):
                    continue
                pr.beat_at = now
            self._replicate(peer, now, heartbeat=heartbeat)

    def _send_new_entries(self, now: float) -> None:
        """After appending proposals: send them, then commit if we alone make a majority."""
        for peer in self._followers():
            progress = self._progress[peer]
            # A follower with appends in flight gets the new entries with whatever else
            # arrives meanwhile when it answers (or at the next heartbeat): under load,
            # proposals travel in batches; when idle, at once.
            inflight = progress.inflight
            if progress.state is not ProgressState.REPLICATE or not inflight or \
                    (len(inflight) < EAGER_INFLIGHT and inflight[-1] <= self._commit):
                self._replicate(peer, now)
        self._maybe_commit()

    def _learner_rests(self, peer: bytes, pr: Progress, now: float) -> bool:
        """Whether a learner skips this heartbeat: it never campaigns, so it needs one only to
        find a lost append (the heartbeat's log position) and the commit index, which a learner
        in step with nothing new to take and the commit index known already has. One every
        ``election_timeout_min`` then does (at ten nodes, a third of an idle leader's sends).
        A learner that owes answers (``LEARNER_ANSWERS_EVERY``) gets every heartbeat: its
        answer tells the leader how far it is."""
        return (pr.state is ProgressState.REPLICATE and pr.next > self._sendable(peer)
                and not pr.inflight
                and self._commit_sent.get(peer, 0) >= self._commit
                and now - pr.beat_at < self._cfg.election_timeout_min)

    def _sendable(self, peer: bytes) -> int:
        """The last entry ``peer`` may be sent: the log's end for a voter, the commit index for
        a learner. A learner never counts toward a commit, so it gets entries only once they
        are committed, with the commit index: one message per commit (not an append, then a
        notice), applied on arrival, and its work stays out of the voters' round."""
        if peer in self._log.config().voters:
            return self._log.last_index
        return self._commit

    def _replicate(self, peer: bytes, now: float, *, heartbeat: bool = False) -> None:
        """Send ``peer`` what it lacks, as far as its flow control allows."""
        if self._send_append(peer, now, heartbeat=heartbeat):
            while self._send_append(peer, now, heartbeat=False):
                pass

    def _send_append(self, peer: bytes, now: float, *, heartbeat: bool) -> bool:
        """Send one append (or a snapshot); True if more could follow at once."""
        pr = self._progress[peer]
        cfg = self._cfg
        last = self._sendable(peer)
        if pr.state is ProgressState.SNAPSHOT:
            if now - pr.sent_at < cfg.election_timeout_min:
                return False
            pr.state = ProgressState.PROBE  # the snapshot or its answer was lost: start over
        if not heartbeat:
            if pr.state is ProgressState.PROBE and now - pr.sent_at < cfg.heartbeat_interval:
                return False
            if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= cfg.max_inflight:
                return False
            if pr.next > last and pr.state is ProgressState.REPLICATE:
                return False  # nothing new; heartbeats carry the commit index
        prev = pr.next - 1
        prev_term = self._log.term_at(prev)
        if prev_term is None:
            self._send_snapshot(peer, pr, now)
            return False
        entries = self._log.slice(pr.next, min(cfg.max_entries_per_message, last - prev),
                                  cfg.max_bytes_per_message)
        if pr.state is ProgressState.PROBE:
            pr.sent_at = now
        if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= cfg.max_inflight:
            entries = []  # a heartbeat never overfills the pipeline
        if pr.state is ProgressState.REPLICATE and entries:
            pr.next = entries[-1].index + 1
            pr.inflight.append(entries[-1].index)
        self._commit_sent[peer] = self._commit
        self._send(peer, AppendEntries(self._term, prev, prev_term, self._commit, tuple(entries)))
        return pr.state is ProgressState.REPLICATE and bool(entries)

    def _announce_commit(self, now: float) -> None:
        """A commit notice to each follower in step that was not sent the commit index yet;
        a learner gets the newly committed entries instead (``_sendable``)."""
        if self._state is not State.LEADER:
            return
        commit = self._commit
        sent = self._commit_sent
        voters = self._log.config().voters
        for peer in self._followers():
            pr = self._progress[peer]
            if pr.state is not ProgressState.REPLICATE or sent.get(peer, 0) >= commit:
                continue
            if peer not in voters:
                if len(pr.inflight) < LEARNER_PIPELINE:
                    self._replicate(peer, now)
                if sent.get(peer, 0) >= commit or pr.next <= commit:
                    continue  # sent now, or the append that follows its answer carries them
            elif pr.inflight and self._log.last_index > commit:
                continue  # busy: the append that follows its answer carries it
            prev_term = self._log.term_at(pr.next - 1)
            if prev_term is None:
                continue  # it needs the snapshot: the next append sends it
            sent[peer] = commit
            self._send(peer, AppendEntries(self._term, pr.next - 1, prev_term, commit, (),
                                           quiet=True))

    def _send_snapshot(self, peer: bytes, pr: Progress, now: float) -> None:
        # One snapshot (up to 64 MiB) per election timeout at most, whatever the follower
        # answers meanwhile: the probe that needs another waits for a later heartbeat.
        if self._snapshot is None or now - pr.snapshot_at < self._cfg.election_timeout_min:
            return
        pr.state = ProgressState.SNAPSHOT
        pr.sent_at = pr.snapshot_at = now
        pr.snapshot_index = self._snapshot.index
        pr.inflight = []
        self._counters["snapshots_sent"] += 1
        self._send(peer, InstallSnapshot(self._term, self._snapshot))

    def _on_append_response(self, sender: bytes, msg: AppendResponse, now: float) -> None:
        pr = self._progress.get(sender)
        if self._state is not State.LEADER or pr is None:
            return
        pr.heard_at = now
        if msg.success:
            if msg.index > self._log.last_index:
                raise RemoteProtocolError("append response acknowledges entries never sent")
            pr.inflight = [i for i in pr.inflight if i > msg.index]
            if msg.index > pr.match:
                pr.match = msg.index
                pr.next = max(pr.next, msg.index + 1)
                if pr.state is not ProgressState.REPLICATE:
                    pr.state = ProgressState.REPLICATE
                    pr.next, pr.inflight = msg.index + 1, []
                self._maybe_commit()
            elif pr.state is ProgressState.PROBE:
                # The probe found the follower's log in step with nothing new: a learner is
                # probed with no entries while the new leader's first entry is not committed.
                pr.state = ProgressState.REPLICATE
                pr.next, pr.inflight = pr.match + 1, []
            if sender == self._transfer_to:
                self._maybe_hand_over(now)
        else:
            if pr.state is ProgressState.SNAPSHOT:
                return  # the snapshot on its way answers for the follower's log (or times out)
            # The hint may lie below ``match`` (stale entries of the same term as the matching
            # ones, walked down to the commit index): back up to just after ``match`` then,
            # never ignore it, or the follower would refuse the same append forever.
            pr.state = ProgressState.PROBE
            pr.inflight = []
            if pr.quick_probe(now, self._cfg.heartbeat_interval):
                pr.sent_at = -1e18  # else the probe pacing holds (``_send_append``)
            pr.next = max(pr.match + 1, min(msg.index + 1, pr.next - 1))
        self._replicate(sender, now)

    def _maybe_commit(self) -> None:
        config = self._log.config()
        if self._state is not State.LEADER or not config.voters:
            return
        own = min(self._durable, self._log.last_index) if self._write_behind \
            else self._log.last_index
        matches = sorted(
            (own if voter == self._id
             else (self._progress[voter].match if voter in self._progress else 0))
            for voter in config.voters
        )
        candidate = matches[len(matches) - config.quorum()]
        if candidate > self._commit and self._log.term_at(candidate) == self._term:
            self._commit = candidate
            self._apply_committed()

    def _on_persisted(self, index: int, term: int) -> None:
        if self._log.term_at(index) != term:
            return  # replaced since (or compacted: then it is committed and counts no more)
        if index > self._durable:
            self._durable = index
            self._maybe_commit()

    # --- follower -------------------------------------------------------------------------------

    def _on_append(self, sender: bytes, msg: AppendEntries, now: float) -> None:
        if self._state is State.LEADER:
            raise RemoteProtocolError(f"a second leader in term {self._term}")
        if self._state is not State.FOLLOWER or self._leader != sender:
            self._become_follower(msg.term, sender, now)
        self._heard_leader_at = now
        self._reset_election_timer(now)
        prev, prev_term, entries = msg.prev_index, msg.prev_term, msg.entries
        base = self._log.base_index
        if prev < base:  # what we compacted is committed: skip it
            skip = base - prev
            if skip >= len(entries):
                if not msg.quiet:
                    self._send(sender, AppendResponse(self._term, True, base))
                return
            prev, prev_term, entries = base, self._log.base_term, entries[skip:]
        if prev > self._log.last_index:
            self._answered = None  # the leader backs up: answer its next probe
            self._send(sender, AppendResponse(self._term, False, self._log.last_index))
            return
        held = self._log.term_at(prev)
        if held != prev_term:
            self._answered = None  # the leader backs up: answer its next probe
            self._send(sender, AppendResponse(self._term, False, self._conflict_hint(prev)))
            return
        self._store_entries(entries, now)
        match = prev + len(entries)
        if min(msg.commit, match) > self._commit:
            self._commit = min(msg.commit, match)
            self._apply_committed()
        if entries and self._defers_answer():
            return
        if entries or not (msg.quiet or self._may_skip_answer(match, now)):
            self._answered = (self._term, match, now)
            self._deferred = 0
            self._send(sender, AppendResponse(self._term, True, match))

    def _defers_answer(self) -> bool:
        """Whether a learner leaves an append it took unanswered (``LEARNER_ANSWERS_EVERY``):
        not a voter, and it answered this term's leader before (a new leader, or one backing
        up after a refusal, hears at once)."""
        answered = self._answered
        if answered is None or answered[0] != self._term or self._is_voter():
            return False
        self._deferred += 1
        if self._deferred >= LEARNER_ANSWERS_EVERY:
            return False
        self._counters["learner_answers_deferred"] += 1
        return True

    def _may_skip_answer(self, match: int, now: float) -> bool:
        """Whether a heartbeat (an append without entries) may go unanswered: we said yes at
        this very index in this term less than ``answer_interval`` ago, so an answer would only
        tell the leader that we are alive, which it heard recently enough for its check-quorum.
        Answers are most of an idle leader's incoming messages."""
        answered = self._answered
        if answered is None or answered[:2] != (self._term, match):
            return False
        if now - answered[2] < self._cfg.answer_interval:
            self._counters["heartbeats_unanswered"] += 1
            return True
        return False

    def _conflict_hint(self, prev: int) -> int:
        """The index before the first entry of the term that conflicts at ``prev``."""
        term = self._log.term_at(prev)
        floor = max(self._commit, self._log.base_index)
        index = prev
        while index - 1 > floor and self._log.term_at(index - 1) == term:
            index -= 1
        return index - 1

    def _store_entries(self, entries: tuple[Entry, ...], now: float) -> None:
        config_before = self._log.config()
        for pos, entry in enumerate(entries):
            held = self._log.term_at(entry.index)
            if held == entry.term:
                continue
            if held is not None:
                if entry.index <= self._commit:
                    raise RemoteProtocolError(f"append conflicts with committed {entry.index}")
                self._truncate_local(entry.index)
            for new in entries[pos:]:
                self._append_local(new)
            break
        if self._log.config() != config_before:
            self._config_changed(now)

    def _config_changed(self, now: float) -> None:
        if self._state is State.LEADER:
            self._sync_progress(now)
        elif self._is_voter() != (self._election_at is not None):
            self._reset_election_timer(now)

    # --- both -----------------------------------------------------------------------------------

    def _apply_committed(self) -> None:
        if self._commit <= self._applied:
            return
        entries = tuple(self._log.entry(i) for i in range(self._applied + 1, self._commit + 1))
        self._applied = self._commit
        self._emit(Apply(entries))
        snap_index = self._snapshot.index if self._snapshot is not None else 0
        if self._snapshot_asked is None and \
                self._applied - snap_index >= self._cfg.snapshot_threshold:
            self._snapshot_asked = self._applied
            self._emit(TakeSnapshot(self._applied))
