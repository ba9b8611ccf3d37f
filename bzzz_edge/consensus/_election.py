"""Raft leader election: pre-vote, votes, leadership hand-over, the membership hook. No I/O.

- A voter that hears from no leader for its randomised election timeout first polls the other
  voters (pre-vote: ``term + 1`` is asked about but nobody's term changes); only with a
  majority of pre-votes does it raise its term and ask for real votes. A node coming back from
  a partition, whose log is behind or whose peers still hear from a leader, therefore cannot
  push the cluster's term up and depose a working leader.
- A voter refuses (pre-)votes while it heard from a leader within ``election_timeout_min``
  (and a leader always refuses), except for elections that ``TimeoutNow`` started; and
  pre-votes for a rival of the candidate it gave its vote to in this term, within
  ``election_timeout_min`` of giving it (that candidate may have won, its first heartbeats
  lost: ``_voted_elsewhere``).
- Vote requests from nodes that are not voters in our latest configuration are counted but
  answered as any other: that configuration may be stale and uncommitted, and refusing on its
  word can leave no electable majority. A removed node cannot disrupt a working cluster
  (voters in lease refuse it) nor win (its log lacks the entry that removed it).
- ``LeaderLost`` (membership declared our leader dead, or our connection to it closed) forgets
  the leader and schedules an election within one heartbeat interval, instead of waiting out
  the election timeout. After a kill -9 every follower's connection closes at once; the random
  delay lets the first one win its pre-vote and vote before the next starts (no split vote).
  A false alarm (the connection closed, the leader lives) costs a refused pre-vote: the voters
  that still hear the leader are in lease.
"""

from __future__ import annotations

import logging
import math

from bzzz_edge.consensus._events import State
from bzzz_edge.consensus._messages import RequestVote, TimeoutNow, VoteResponse
from bzzz_edge.consensus._state import CoreState

__all__ = ["ElectionMixin"]

_log = logging.getLogger(__name__)


class ElectionMixin(CoreState):
    def _on_election_timeout(self, now: float) -> None:
        if not self._is_voter() or self._state is State.LEADER:
            self._election_at = None
            return
        self._campaign(now, pre_vote=self._cfg.pre_vote)

    def _campaign(self, now: float, *, pre_vote: bool, transfer: bool = False) -> None:
        config = self._log.config()
        if pre_vote:
            self._state = State.PRE_CANDIDATE
            term = self._term + 1
        else:
            self._set_term(self._term + 1, self._id)
            self._state = State.CANDIDATE
            term = self._term
        self._leader = None
        self._votes = {self._id}
        self._reset_election_timer(now)
        self._role_changed()
        if len(self._votes) >= config.quorum():
            self._won(now, pre_vote)
            return
        request = RequestVote(term, self._log.last_index, self._log.last_term, pre_vote, transfer)
        for voter in sorted(config.voters - {self._id}):
            self._send(voter, request)

    def _won(self, now: float, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(now, pre_vote=False)
        else:
            _log.info("raft: elected leader in term %d", self._term)
            self._become_leader(now)

    def _on_request_vote(self, sender: bytes, msg: RequestVote, now: float) -> None:
        if sender not in self._log.config().voters:
            # Counted, not refused: our latest configuration may be a stale, uncommitted one
            # (seed 154 of the reconfiguring chaos runs deadlocked when it was refused), and
            # the dissertation's rule is to answer requests without consulting it (4.1). A
            # removed node is kept from disrupting by the lease check below, and cannot win:
            # a majority holds the entry that removed it, so its log is not up to date.
            self._counters["votes_from_non_voters"] += 1
        if not msg.transfer and self._in_lease(now):
            self._counters["votes_refused_in_lease"] += 1
            if msg.pre_vote:
                self._send(sender, VoteResponse(self._term, False, True))
            return  # a real vote in lease is ignored: our term stays put
        if msg.term < self._term:
            self._counters["stale_term"] += 1
            self._send(sender, VoteResponse(self._term, False, msg.pre_vote))
            return
        up_to_date = self._log.is_up_to_date(msg.last_index, msg.last_term)
        if msg.pre_vote:
            granted = msg.term > self._term and up_to_date
            if granted and self._voted_elsewhere(sender, now):
                self._counters["pre_votes_refused_after_vote"] += 1
                granted = False
            self._send(sender, VoteResponse(msg.term if granted else self._term, granted, True))
            return
        if msg.term > self._term:
            # A newer term, but the timer runs on unless we grant the vote (Raft, 3.4): a
            # candidate with a stale log that kept resetting it would keep the up-to-date
            # voters from ever standing (without pre-vote: chaos seed 51 stayed leaderless).
            election_at = self._election_at
            self._become_follower(msg.term, None, now)
            if election_at is not None and self._election_at is not None:
                self._election_at = election_at
        granted = up_to_date and self._vote in (None, sender)
        if granted:
            self._set_term(self._term, sender)
            self._voted_at = now
            self._reset_election_timer(now)
        self._send(sender, VoteResponse(self._term, granted, False))

    def _on_vote_response(self, sender: bytes, msg: VoteResponse, now: float) -> None:
        config = self._log.config()
        expected = State.PRE_CANDIDATE if msg.pre_vote else State.CANDIDATE
        wanted_term = self._term + 1 if msg.pre_vote else self._term
        if self._state is not expected or msg.term != wanted_term:
            return  # late, or for another round
        if not msg.granted:
            if sender in config.voters:  # a learner's "no" counts for nothing either way
                self._vote_refused(msg.pre_vote, now)
            return
        self._votes.add(sender)
        if len(self._votes & config.voters) >= config.quorum():
            self._won(now, msg.pre_vote)

    def _vote_refused(self, pre_vote: bool, now: float) -> None:
        """A voter refused this candidacy in its term: it voted for another candidate (two
        followers that lost their leader at the same moment both stand), or its log is ahead.
        Stand again within a heartbeat interval at random, not after a whole election timeout
        (with slow timings a split vote after a kill -9 meant 40-60 s without a coordinator);
        won meanwhile, nothing happens. Only with pre-vote: the next try polls first, so it
        raises no term unless a majority would follow it (a voter whose log is ahead refuses
        the poll, and stands itself)."""
        if pre_vote or not self._cfg.pre_vote:
            return
        soon = now + self._rng.uniform(0.0, self._cfg.heartbeat_interval)
        if self._election_at is None or soon < self._election_at:
            self._election_at = soon

    def _voted_elsewhere(self, candidate: bytes, now: float) -> bool:
        """Whether we gave our vote in this term to another candidate within the minimum
        election timeout. It may have won, its first heartbeats still on their way or lost: a
        pre-vote for a rival now would help depose it (a refused rival polls again within a
        heartbeat interval, ``_vote_refused``). A candidate that voted for itself refuses no
        one: after a split, one of the two must be able to gather the other's vote quickly."""
        return (self._vote not in (None, self._id, candidate)
                and self._heard_leader_at < self._voted_at  # it has not led since (else: lease)
                and now - self._voted_at < self._cfg.election_timeout_min)

    def _on_timeout_now(self, sender: bytes, msg: TimeoutNow, now: float) -> None:
        if sender != self._leader or msg.term != self._term or not self._is_voter():
            self._counters["timeout_now_refused"] += 1
            return
        self._campaign(now, pre_vote=False, transfer=True)

    def _on_leader_lost(self, node: bytes, now: float) -> None:
        if node == self._vote and node not in (self._id, self._leader):
            # The candidate we voted for is gone (it may have won, its first heartbeat never
            # sent): refusing its rivals' polls now would only hold the next election up for
            # an election timeout (``_voted_elsewhere``).
            self._voted_at = -math.inf
        if node != self._leader or self._state is State.LEADER:
            return
        self._leader = None
        self._heard_leader_at = self._voted_at = -math.inf  # gone: any candidate may poll us
        self._role_changed()
        if self._is_voter():
            soon = now + self._rng.uniform(0.0, self._cfg.heartbeat_interval)
            self._election_at = min(self._election_at or soon, soon)
