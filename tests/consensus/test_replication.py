"""Raft replication back to back: commit by majority, the current-term rule, persistence order,
catching up, snapshots and a bounded log."""

from __future__ import annotations

import math
import random

import pytest

from bzzz_edge.consensus import (
    Accepted,
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    Persist,
    Propose,
    Raft,
    Received,
    Rejected,
    Rejection,
    RestoreSnapshot,
    Send,
    State,
    decode_message,
    encode_message,
    lan,
)
from bzzz_edge.consensus._events import Persisted, ProposeMany
from bzzz_edge.errors import DecodeError

from .conftest import Net


def test_a_proposal_commits_on_a_majority_and_applies_everywhere(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    out = net.handle(leader, Propose(7, b"set x=1"))
    accepted = [a for a in out if isinstance(a, Accepted)]
    assert accepted and accepted[0].ref == 7
    net.advance(net.config.heartbeat_interval + 0.05)  # followers learn the commit
    for node in net.ids:
        assert net.applied[node] == [b"set x=1"]


def test_no_commit_without_a_majority(make_net) -> None:
    net = make_net(5)
    leader = net.elect()
    others = [i for i in range(5) if i != leader]
    for i in others[:3]:
        net.down.add(net.ids[i])
    net.handle(leader, Propose(1, b"lonely"))
    net.advance(0.1)
    assert net.core(leader).commit_index < net.core(leader).last_index
    assert b"lonely" not in net.applied[net.ids[leader]]


def test_the_leaders_appends_follow_the_persist_of_the_entry(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.deliver()
    out = net.handle(leader, Propose(1, b"a"))
    persist = next(i for i, a in enumerate(out) if isinstance(a, Persist) and a.entries)
    sends = [i for i, a in enumerate(out)
             if isinstance(a, Send) and isinstance(a.message, AppendEntries) and a.message.entries]
    assert sends and min(sends) > persist


def test_a_follower_persists_entries_before_acknowledging_them(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(0.1)
    follower = (leader + 1) % 3
    term, last = net.core(follower).term, net.core(follower).last_index
    append = AppendEntries(term, last, term, 0, (Entry(term, last + 1, EntryKind.COMMAND, b"z"),))
    out = net.handle(follower, Received(net.ids[leader], encode_message(append)))
    assert [type(a) for a in out] == [Persist, Send]
    assert out[0].entries[0].data == b"z"  # type: ignore[union-attr]


def test_an_old_term_entry_is_not_committed_by_counting_replicas(make_net) -> None:
    # The dissertation's figure 3.7: a leader holding an entry of an older term that a
    # majority stores must not call it committed until an entry of its own term is.
    net = make_net(3)
    first = net.elect()
    net.advance(0.1)
    f1, f2 = [i for i in range(3) if i != first]
    net.down = {net.ids[f2]}
    net.drop = lambda sender, dest, value: value[0] == 4  # type: ignore[index]
    net.handle(first, Propose(1, b"old"))
    net.deliver()  # f1 stores "old"; its acknowledgement is lost
    old = net.core(first).last_index
    assert net.core(f1).last_index == old and net.core(first).commit_index < old
    net.restart(first)  # "old" stays uncommitted in two logs, from the older term
    leader = net.elect()  # either of the two; no acknowledgement reaches it
    other = first if leader == f1 else f1
    new_term = net.core(leader).term
    ack_old_only = AppendResponse(new_term, True, old)  # holds "old", not the new no-op yet
    net.handle(leader, Received(net.ids[other], encode_message(ack_old_only)))
    assert net.core(leader).commit_index < old  # a majority holds it, but from an older term
    net.drop = None
    net.advance(0.3)
    assert net.core(leader).commit_index > old and net.core(leader).term == new_term
    assert b"old" in net.applied[net.ids[other]]


def test_a_lagging_follower_catches_up_a_term_at_a_time(make_net) -> None:
    net = make_net(3, config=lan(max_entries_per_message=8))
    leader = net.elect()
    lagging = (leader + 1) % 3
    net.down.add(net.ids[lagging])
    for ref in range(200):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        net.deliver()
    net.down.clear()
    net.advance(1.0)
    assert net.applied[net.ids[lagging]] == [b"c%d" % r for r in range(200)]


def test_the_log_stays_bounded_and_a_far_behind_follower_gets_the_snapshot(make_net) -> None:
    config = lan(snapshot_threshold=50, snapshot_trailing=10)
    net = make_net(3, config=config)
    leader = net.elect()
    far = (leader + 1) % 3
    net.down.add(net.ids[far])
    for ref in range(500):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        net.deliver()
        assert net.core(leader).log_length <= 50 + 10 + 2
    assert net.core(leader).snapshot_index >= 450
    net.restart(far)
    net.advance(1.0)
    assert net.core(far).commit_index == net.core(leader).commit_index
    restored = [a for a in net.actions[net.ids[far]] if isinstance(a, RestoreSnapshot)]
    assert restored and restored[-1].snapshot.index >= 450
    assert net.core(leader).counters["snapshots_sent"] >= 1


def test_a_restarted_node_recovers_its_log_from_its_disk(make_net) -> None:
    net = make_net(3, config=lan(snapshot_threshold=20, snapshot_trailing=3))
    leader = net.elect()
    for ref in range(45):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        net.deliver()
    follower = (leader + 1) % 3
    before = net.core(follower).last_index
    net.restart(follower)
    assert net.core(follower).last_index == before
    assert net.core(follower).snapshot_index >= 20


def test_proposals_to_a_follower_are_refused_with_the_leaders_id(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(0.1)
    follower = (leader + 1) % 3
    out = net.handle(follower, Propose(3, b"x"))
    assert out == [Rejected(3, Rejection.NOT_LEADER, net.ids[leader])]


def test_an_oversized_command_is_refused(make_net) -> None:
    net = make_net(1, config=lan(max_command_bytes=100))
    net.elect()
    out = net.handle(0, Propose(1, b"x" * 101))
    assert out == [Rejected(1, Rejection.TOO_LARGE, net.ids[0])]


def test_proposals_beyond_the_backlog_are_refused(make_net) -> None:
    net = make_net(3, config=lan(max_pending_proposals=5))
    leader = net.elect()
    net.deliver()
    for i in range(3):
        if i != leader:
            net.down.add(net.ids[i])
    outs = [net.handle(leader, Propose(r, b"x")) for r in range(8)]
    assert sum(isinstance(o[-1], Rejected) for o in outs) >= 3
    assert net.core(leader).state is State.LEADER


def test_a_refusal_hinting_below_the_match_index_backs_up_to_the_match(make_net) -> None:
    # A follower holding stale entries of the same term as its last matching one hints at
    # its commit index, below what it acknowledged; the leader must resend from its match.
    net = make_net(3)
    leader = net.elect()
    for ref in range(6):
        net.handle(leader, Propose(ref, b"c%d" % ref))
    net.advance(0.2)
    follower = (leader + 1) % 3
    match = net.core(leader).progress()[net.ids[follower]].match
    term = net.core(leader).term
    net.queue.clear()
    refusal = AppendResponse(term, False, 1)
    out = net.handle(leader, Received(net.ids[follower], encode_message(refusal)))
    appends = [a.message for a in out if isinstance(a, Send) and a.to == net.ids[follower]]
    assert appends and appends[0].prev_index == match  # type: ignore[union-attr]


def test_followers_learn_a_commit_at_once_from_a_quiet_notice(make_net) -> None:
    # No tick between the proposal and the check: only the notice can tell the followers.
    net = make_net(5)
    leader = net.elect()
    net.advance(0.1)
    net.actions = {node: [] for node in net.ids}
    net.handle(leader, Propose(1, b"known everywhere"))
    net.deliver()
    commit = net.core(leader).commit_index
    assert net.core(leader).last_index == commit
    for i in range(5):
        assert net.core(i).commit_index == commit, f"node {i} did not learn the commit"
        assert b"known everywhere" in net.applied[net.ids[i]]
    notices = [a for a in net.actions[net.ids[leader]] if isinstance(a, Send)
               and isinstance(a.message, AppendEntries) and a.message.quiet]
    assert notices and all(not a.message.entries for a in notices)  # type: ignore[union-attr]
    for i in range(5):  # a notice is never answered, only refused
        if i != leader:
            answers = [a for a in net.actions[net.ids[i]] if isinstance(a, Send)]
            assert len(answers) == 1 and isinstance(answers[0].message, AppendResponse)


def test_learners_get_an_entry_once_committed_in_one_message_after_the_voters(make_net):
    net = make_net(5, voters=3)  # nodes 3 and 4 are learners
    leader = net.elect()
    net.advance(0.1)
    learners = set(net.ids[3:])
    out = net.handle(leader, Propose(1, b"claim"))
    sent = [a.to for a in out if isinstance(a, Send)]
    assert set(sent) == set(net.ids[:3]) - {net.ids[leader]}  # the voters only, for now
    net.actions = {node: [] for node in net.ids}
    net.deliver()
    commit = net.core(leader).commit_index
    to_learners = [a for a in net.actions[net.ids[leader]]
                   if isinstance(a, Send) and a.to in learners]
    assert len(to_learners) == 2  # one each: the entry and the commit index together
    for send in to_learners:
        message = send.message
        assert isinstance(message, AppendEntries) and not message.quiet
        assert [e.data for e in message.entries] == [b"claim"] and message.commit == commit
    for node in learners:
        assert net.applied[node][-1] == b"claim"
        # In step already (it answered this leader before): its answer is deferred.
        assert not [a for a in net.actions[node] if isinstance(a, Send)]
    # The voters hear of the commit first, as of everything else.
    to_learner = [isinstance(a, Send) and a.to in learners for a in net.actions[net.ids[leader]]
                  if isinstance(a, Send) and isinstance(a.message, AppendEntries)]
    assert to_learner == sorted(to_learner)


def test_a_follower_that_cannot_match_a_notice_refuses_it(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(0.1)
    follower = (leader + 1) % 3
    term, last = net.core(follower).term, net.core(follower).last_index
    notice = AppendEntries(term, last + 5, term, last + 5, (), quiet=True)
    out = net.handle(follower, Received(net.ids[leader], encode_message(notice)))
    answers = [a.message for a in out if isinstance(a, Send)]
    assert answers == [AppendResponse(term, False, last)]
    assert net.core(follower).commit_index <= last


def test_a_quiet_notice_round_trips_and_carries_no_entries() -> None:
    limits = lan().limits
    notice = AppendEntries(3, 9, 3, 8, (), quiet=True)
    assert decode_message(encode_message(notice), limits) == notice
    assert len(encode_message(AppendEntries(3, 9, 3, 8))) == 6  # the old form, unchanged
    forged = [*encode_message(AppendEntries(3, 9, 3, 8, (Entry(3, 10, EntryKind.COMMAND,
                                                                b"x"),))), True]
    with pytest.raises(DecodeError, match="quiet"):
        decode_message(forged, limits)


def test_the_driver_drops_a_notice_that_a_later_append_of_its_batch_supersedes() -> None:
    from bzzz_edge.consensus._batch import without_stale_notices

    a, b = b"a" * 32, b"b" * 32
    notice_a, notice_b = (Send(n, AppendEntries(2, 5, 2, 5, (), quiet=True)) for n in (a, b))
    append_a = Send(a, AppendEntries(2, 5, 2, 6, (Entry(2, 6, EntryKind.COMMAND, b"x"),)))
    kept = without_stale_notices([notice_a, notice_b, append_a])
    assert kept == [notice_b, append_a]
    assert without_stale_notices([append_a, notice_a]) == [append_a, notice_a]


def test_proposals_handed_in_together_go_in_one_append_per_follower(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(0.1)
    big = b"x" * (net.config.max_command_bytes + 1)
    batch = ProposeMany((Propose(1, b"a"), Propose(2, big), Propose(3, b"c")))
    out = net.handle(leader, batch)
    assert [a.ref for a in out if isinstance(a, Accepted)] == [1, 3]
    assert [(a.ref, a.reason) for a in out if isinstance(a, Rejected)] == \
        [(2, Rejection.TOO_LARGE)]
    appends = [a for a in out if isinstance(a, Send) and isinstance(a.message, AppendEntries)]
    assert len(appends) == 2  # one per follower, both commands in it
    for append in appends:
        assert [e.data for e in append.message.entries] == [b"a", b"c"]  # type: ignore[union-attr]
    net.deliver()
    for node in net.ids:
        assert net.applied[node][-2:] == [b"a", b"c"]
class _WriteBehindNet(Net):
    """Cores made with ``write_behind``: a leader counts its own entries only once told."""

    def _core(self, node: bytes) -> Raft:
        return Raft(node, now=self.now, config=self.config, stored=self.disks[node].stored(),
                    bootstrap=self.bootstrap, rng=random.Random(self.rng.random()),
                    write_behind=True)


def test_with_write_behind_a_leader_counts_its_own_copy_only_once_told() -> None:
    net = _WriteBehindNet(3)
    leader = net.elect()
    net.advance(0.1)
    core = net.core(leader)
    assert core.commit_index == core.last_index  # the no-op: both followers hold it
    net.down.add(net.ids[(leader + 1) % 3])  # now the leader's copy is needed for a majority
    net.handle(leader, Propose(1, b"behind"))
    net.deliver()
    assert core.commit_index == core.last_index - 1, "committed without the leader's copy"
    net.handle(leader, Persisted(core.last_index, 7))  # another term's entry: not ours
    assert core.commit_index == core.last_index - 1
    net.handle(leader, Persisted(core.last_index, core.term))
    assert core.commit_index == core.last_index
    assert b"behind" in net.applied[net.ids[leader]]


def test_with_write_behind_a_majority_of_followers_commits_before_the_leaders_write() -> None:
    net = _WriteBehindNet(5)
    leader = net.elect()
    net.advance(0.1)
    core = net.core(leader)
    net.handle(leader, Persisted(core.last_index, core.term))
    net.handle(leader, Propose(1, b"three of five"))
    net.deliver()  # four followers hold it durably: a majority without the leader
    assert core.commit_index == core.last_index
    for node in net.ids:
        assert b"three of five" in net.applied[node]


def test_a_follower_whose_answer_is_late_still_learns_the_commit_of_an_idle_leader(make_net):
    net = make_net(5)
    leader = net.elect()
    net.advance(0.1)
    slow = net.ids[(leader + 1) % 5]
    net.drop = lambda sender, dest, value: sender == slow and value[0] == 4  # type: ignore
    net.handle(leader, Propose(1, b"late"))
    net.deliver()  # its answer is lost: its append is still in flight as the leader sees it
    core = net.core(leader)
    assert core.commit_index == core.last_index
    assert net.cores[slow].commit_index == core.commit_index


def _heartbeat_answers(net, follower: int, seconds: float) -> int:
    net.actions = {node: [] for node in net.ids}
    net.advance(seconds)
    return sum(1 for a in net.actions[net.ids[follower]]
               if isinstance(a, Send) and isinstance(a.message, AppendResponse))


def test_a_follower_in_step_answers_heartbeats_only_every_answer_interval(make_net) -> None:
    net = make_net(5)
    leader = net.elect()
    net.advance(1.0)
    config = net.config
    follower = (leader + 1) % 5
    seconds = 10.0
    heartbeats = seconds / config.heartbeat_interval
    answers = _heartbeat_answers(net, follower, seconds)
    every = math.ceil(config.answer_interval / config.heartbeat_interval)  # 2 at lan timings
    assert every >= 2 and heartbeats / every - 1 <= answers <= heartbeats / every + 1
    assert net.core(follower).counters["heartbeats_unanswered"] >= answers - 1
    # ... and the leader, hearing each follower often enough, keeps its term for all that time
    assert net.leaders() == [leader] and net.core(leader).counters["check_quorum_step_downs"] == 0


def test_a_follower_answers_every_heartbeat_that_finds_it_out_of_step(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(1.0)
    follower = (leader + 1) % 3
    term, last = net.core(follower).term, net.core(follower).last_index
    ahead = AppendEntries(term, last + 3, term, net.core(leader).commit_index)
    out = net.handle(follower, Received(net.ids[leader], encode_message(ahead)))
    assert [a.message for a in out if isinstance(a, Send)] == [AppendResponse(term, False, last)]
    # The leader's probe at the index it last heard a yes for is answered at once, although
    # the follower said yes at that index a moment ago.
    probe = AppendEntries(term, last, term, net.core(leader).commit_index)
    out = net.handle(follower, Received(net.ids[leader], encode_message(probe)))
    assert [a.message for a in out if isinstance(a, Send)] == [AppendResponse(term, True, last)]
    # ... and the same heartbeat once more right away is not: nothing new to say.
    out = net.handle(follower, Received(net.ids[leader], encode_message(probe)))
    assert not [a for a in out if isinstance(a, Send)]


def test_every_heartbeat_is_answered_when_the_timings_leave_no_room(make_net) -> None:
    config = lan(heartbeat_interval=0.5, election_timeout_min=0.8, election_timeout_max=1.0)
    assert config.answer_interval == 0
    net = make_net(3, config=config)
    leader = net.elect()
    net.advance(1.0)
    follower = (leader + 1) % 3
    answers = _heartbeat_answers(net, follower, 5.0)
    assert answers >= 5.0 / config.heartbeat_interval - 1


def test_learners_in_step_get_a_heartbeat_per_minimum_election_timeout(make_net) -> None:
    net = make_net(5, voters=3)
    leader = net.elect()
    net.advance(1.0)
    config = net.config
    voters, learners = net.ids[:3], net.ids[3:]
    assert net.ids[leader] in voters
    net.actions = {node: [] for node in net.ids}
    seconds = 10.0
    net.advance(seconds)
    beats = {node: 0 for node in net.ids}
    for a in net.actions[net.ids[leader]]:
        if isinstance(a, Send) and isinstance(a.message, AppendEntries) and not a.message.quiet:
            beats[a.to] += 1
    for voter in voters:
        if voter != net.ids[leader]:
            assert beats[voter] >= seconds / config.heartbeat_interval - 1
    for learner in learners:  # they never campaign: fewer, but still some
        assert 1 <= beats[learner] <= seconds / config.election_timeout_min + 1
    # A learner that falls behind is caught up at once, not at its next heartbeat.
    net.handle(leader, Propose(9, b"for everyone"))
    net.advance(0.01)  # far less than a learner's heartbeat interval
    for node in net.ids:
        assert net.applied[node][-1:] == [b"for everyone"]


def test_the_driver_sends_carried_notices_after_the_new_appends_unless_to_the_same_peer() -> None:
    from bzzz_edge.consensus._batch import carried_last

    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    notice_a, notice_b = (Send(n, AppendEntries(2, 5, 2, 5, (), quiet=True)) for n in (a, b))
    entry = (Entry(2, 6, EntryKind.COMMAND, b"x"),)
    append_a, append_c = (Send(n, AppendEntries(2, 5, 2, 5, entry)) for n in (a, c))
    carried = [notice_a, notice_b]
    out = carried_last([notice_a, notice_b, append_a, append_c], carried)
    assert out == [notice_a, append_a, append_c, notice_b]  # a's stay in the order made
    assert carried_last([append_c], []) == [append_c]


def test_a_voter_owing_answers_for_committed_entries_only_is_sent_a_new_entry_at_once(
        make_net) -> None:
    net = make_net(5)
    leader = net.elect()
    net.advance(0.1)
    lead = net.ids[leader]
    slow = {i for i in range(5) if i != leader}
    slow = set(sorted(slow)[:2])
    slow_ids = {net.ids[i] for i in slow}
    answering = {"all": False}

    def lose_answers(sender: bytes, dest: bytes, value: object) -> bool:
        # The slow voters' answers never arrive; with "all", nobody's does.
        is_answer = isinstance(value, list) and value[0] == 4  # AppendResponse
        return is_answer and dest == lead and (answering["all"] or sender in slow_ids)

    net.drop = lose_answers
    net.handle(leader, Propose(1, b"one"))
    net.deliver()
    core = net.core(leader)
    assert core.commit_index == core.last_index  # the leader and the two fast voters

    def appended(out: list) -> set[bytes]:
        return {a.to for a in out if isinstance(a, Send) and
                isinstance(a.message, AppendEntries) and a.message.entries}

    # The slow two owe the answer for a committed entry: they get the next one at once too.
    out = net.handle(leader, Propose(2, b"two"))
    assert appended(out) == set(net.ids) - {lead}
    net.deliver()
    assert core.commit_index == core.last_index
    # Under load (nobody has answered for an entry not committed yet), new entries wait to
    # travel together with what follows the answers.
    answering["all"] = True
    net.handle(leader, Propose(3, b"three"))
    out = net.handle(leader, Propose(4, b"four"))
    assert appended(out) == set()


def test_a_learner_answers_one_append_in_several_and_its_match_comes_with_a_heartbeat(
        make_net) -> None:
    from bzzz_edge.consensus._replication import LEARNER_ANSWERS_EVERY

    net = make_net(4, voters=3)  # node 3 is a learner
    leader = net.elect()
    net.advance(0.1)
    learner = net.ids[3]
    deferred = net.core(3).counters["learner_answers_deferred"]
    net.actions = {node: [] for node in net.ids}
    count = 2 * LEARNER_ANSWERS_EVERY + 3
    for ref in range(count):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        net.deliver()
    core = net.core(leader)
    assert net.applied[learner][-count:] == [b"c%d" % r for r in range(count)]  # each at once
    answers = [a.message for a in net.actions[learner] if isinstance(a, Send)]
    assert len(answers) == 2 and all(isinstance(m, AppendResponse) and m.success
                                     for m in answers)
    assert net.core(3).counters["learner_answers_deferred"] - deferred == count - 2
    assert core.progress()[learner].match < core.commit_index
    assert learner in core.caught_up(net.now)  # sent everything, heard recently
    net.advance(net.config.heartbeat_interval + 0.05)  # one heartbeat, answered
    assert core.progress()[learner].match == core.commit_index
    assert learner in core.caught_up(net.now)
