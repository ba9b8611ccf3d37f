"""The quick retry of a refused candidate (``_election._vote_refused``) against the winner of
a split: a voter that gave its vote to one candidate refuses pre-votes for its rivals for a
while (``_voted_elsewhere``), a learner's refusal brings nothing forward, and a true split is
still settled within a couple of heartbeat intervals. Real cores in the simulator
(``conftest.Net``: messages through msgpack, a drop rule for loss)."""

from __future__ import annotations

import msgpack

from bzzz_edge.consensus import LeaderLost, State, lan
from bzzz_edge.consensus._events import Received
from bzzz_edge.consensus._messages import VoteResponse, encode_message

_VOTE, _APPEND = 1, 3  # RequestVote's and AppendEntries' kinds on the wire (``_messages``)


def _lose_leader_and_stand(net, leader: int, standing: list[int]) -> None:
    """The leader dies (a kill -9: every follower's connection to it closes at once) and the
    ``standing`` ones stand at one instant."""
    net.down.add(net.ids[leader])
    for i in range(len(net.ids)):
        if i != leader:
            net.handle(i, LeaderLost(net.ids[leader]))
    net.now = max(net.core(i).next_deadline() for i in standing)
    for i in standing:
        net.perform(net.ids[i], net.core(i).tick(net.now))


def _split_after_a_leader(make_net, config, seed: int):
    """Five voters elect a leader; it dies and two followers stand at one instant: the
    network and the two (a, c)."""
    net = make_net(5, config=config, seed=seed)
    leader = net.elect()
    net.advance(0.05)
    a, c = [i for i in range(5) if i != leader][:2]
    _lose_leader_and_stand(net, leader, [a, c])
    return net, a, c


def test_the_winner_of_a_split_is_not_deposed_by_its_rivals_retry(make_net) -> None:
    # review18: five voters; two stand at once; a wins with the other two, c is refused. a's
    # first heartbeats are lost for a little less than a heartbeat interval, so its voters
    # never heard it lead: c's quick retry got their pre-votes and votes for the next term and
    # deposed a, in 18 of 20 seeds. They refuse c's poll now, having voted for a just before.
    config = lan()
    deposed = 0
    for seed in range(20):
        net, a, c = _split_after_a_leader(make_net, config, seed)
        lost_until = net.now + 0.9 * config.heartbeat_interval
        net.drop = lambda sender, dest, value, a=a, net=net, until=lost_until: (
            sender == net.ids[a] and value[0] == _APPEND and net.now < until)
        net.deliver()
        term = net.core(a).term
        assert net.core(a).state is State.LEADER and net.core(c).state is State.CANDIDATE
        net.advance(0.3)  # a few election timeouts
        if net.leaders() != [a] or net.core(a).term != term:
            deposed += 1
    assert deposed == 0, f"the split's winner was deposed in {deposed} of 20 runs"


def test_a_split_winner_dying_before_its_first_heartbeat_is_replaced_within_two_heartbeats(
        make_net) -> None:
    # review19: after a split the winner dies before any heartbeat of it arrives. Its voters
    # refused the rival's polls for an election timeout (they had just voted for the winner):
    # 1.27 s median at LAN timings, 44 s with 40-60 s ones. Its connections closing tells them
    # the candidate they voted for is gone.
    config = lan()
    worst = 0.0
    for seed in range(20):
        net, _, _ = _split_after_a_leader(make_net, config, seed)
        net.drop = lambda sender, dest, value: value[0] == _APPEND  # no heartbeat gets out
        net.deliver()
        net.drop = None
        (winner,) = net.leaders()
        net.queue.clear()  # what it had sent dies with it
        net.down.add(net.ids[winner])
        for i in range(5):
            if net.ids[i] not in net.down:
                net.handle(i, LeaderLost(net.ids[winner]))
        died = net.now
        while not net.leaders():
            net.advance(0.01)
            assert net.now - died < 10 * config.election_timeout_max, f"seed {seed}: none"
        worst = max(worst, net.now - died)
    assert worst <= 2 * config.heartbeat_interval, worst


def test_a_two_two_split_of_four_live_voters_is_settled_within_two_heartbeats(make_net) -> None:
    # The leader killed: a and c stand at once and each gets one of the other two voters'
    # votes (x hears only a, y only c): two votes each, three needed. Each voter that
    # voted for a rival refuses the other's poll, but a candidate's own vote refuses nobody,
    # so one of them gathers three quickly (with 40-60 s election timeouts: not by timer).
    config = lan(heartbeat_interval=1.0, election_timeout_min=40.0, election_timeout_max=60.0)
    net = make_net(5, config=config)
    leader = net.elect(timeout=120)
    net.advance(1.0)
    a, c, x, y = [i for i in range(5) if i != leader]
    _lose_leader_and_stand(net, leader, [a, c])
    net.drop = lambda sender, dest, value: value[0] == _VOTE and not value[4] and (
        (sender, dest) in ((net.ids[a], net.ids[y]), (net.ids[c], net.ids[x])))
    net.deliver()
    net.drop = None
    assert [net.core(i).state for i in (a, c)] == [State.CANDIDATE] * 2
    assert net.core(x)._vote == net.ids[a] and net.core(y)._vote == net.ids[c]
    split_at = net.now
    while not net.leaders():
        net.advance(0.005)
        assert net.now - split_at < 5.0, "the split waited for an election timeout"
    assert net.now - split_at <= 2 * config.heartbeat_interval
    assert net.leaders()[0] in (a, c)


def test_a_learners_refusal_does_not_bring_a_candidacy_forward(make_net) -> None:
    # Only voters' answers count in an election: a learner (or a peer holding the key posing
    # as one) answering "no" must not make a candidate give up and stand again early.
    net = make_net(4, voters=3)
    leader = net.elect()
    net.advance(0.05)
    candidate = next(i for i in range(3) if i != leader)
    learner = 3
    net.down.add(net.ids[leader])
    for i in range(4):
        net.handle(i, LeaderLost(net.ids[leader]))
    net.now = net.core(candidate).next_deadline()
    net.perform(net.ids[candidate], net.core(candidate).tick(net.now))  # polls
    net.deliver(limit=2)  # the other voter grants the poll: a real candidacy now
    core = net.core(candidate)
    assert core.state is State.CANDIDATE
    net.queue.clear()  # the real vote requests: unanswered
    election_at = core.next_deadline()
    refusal = msgpack.unpackb(msgpack.packb(encode_message(VoteResponse(core.term, False,
                                                                        False))))
    net.perform(net.ids[candidate], core.handle(Received(net.ids[learner], refusal), net.now))
    assert core.next_deadline() == election_at
    net.perform(net.ids[candidate], core.handle(
        Received(net.ids[3 - candidate - leader], refusal), net.now))  # the other voter's
    assert core.next_deadline() < election_at
