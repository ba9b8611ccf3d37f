"""Single-server membership changes, voters and learners, back to back."""

from __future__ import annotations

from bzzz_edge.consensus import (
    Accepted,
    ChangeMember,
    Configuration,
    Propose,
    Rejected,
    Rejection,
    Role,
    State,
)


def test_a_new_node_joins_as_learner_follows_the_log_and_is_promoted(make_net) -> None:
    net = make_net(4, voters=3)
    net.bootstrap = Configuration(frozenset(net.ids[:3]))  # node 3 is not a member yet
    net.cores = {node: net._core(node) for node in net.ids}
    net.cores[net.ids[3]] = net._core(net.ids[3])
    leader = net.elect()
    net.advance(0.1)
    out = net.handle(leader, ChangeMember(1, net.ids[3], Role.REMOVED))
    assert out == [Rejected(1, Rejection.INVALID_CHANGE, net.ids[leader])]
    net.handle(leader, ChangeMember(2, net.ids[3], Role.LEARNER))
    net.handle(leader, Propose(3, b"hello"))
    net.advance(0.3)
    assert net.applied[net.ids[3]] == [b"hello"]
    assert net.core(3).configuration.learners == {net.ids[3]}
    out = net.handle(leader, ChangeMember(4, net.ids[3], Role.VOTER))
    assert any(isinstance(a, Accepted) for a in out)
    net.advance(0.3)
    assert net.core(3).configuration.voters == frozenset(net.ids)
    assert net.core(3).next_deadline() is not None  # a voter now: it would campaign


def test_one_change_at_a_time(make_net) -> None:
    net = make_net(5, voters=3)
    leader = net.elect()
    net.advance(0.1)
    net.handle(leader, ChangeMember(1, net.ids[3], Role.VOTER))
    out = net.handle(leader, ChangeMember(2, net.ids[4], Role.VOTER))
    assert out == [Rejected(2, Rejection.CHANGE_PENDING, net.ids[leader])]
    net.advance(0.2)
    out = net.handle(leader, ChangeMember(3, net.ids[4], Role.VOTER))
    assert any(isinstance(a, Accepted) for a in out)


def test_a_learner_that_has_not_caught_up_is_not_promoted(make_net) -> None:
    net = make_net(4, voters=3)
    leader = net.elect()
    net.down.add(net.ids[3])
    for ref in range(5):
        net.handle(leader, Propose(ref, b"x"))
    # Longer silent than a learner's patience (a quarter of a heartbeat interval and one
    # more: it answers one append in several, and the heartbeats while it owes answers).
    net.advance(0.2 + net.config.heartbeat_interval)
    out = net.handle(leader, ChangeMember(9, net.ids[3], Role.VOTER))
    assert out == [Rejected(9, Rejection.INVALID_CHANGE, net.ids[leader])]


def test_a_learner_whose_answer_to_the_last_commit_is_on_its_way_is_promoted(make_net) -> None:
    # Learners are sent entries once committed: under a stream of commits one always trails
    # the commit index by an answer in flight, and must still count as caught up.
    net = make_net(4, voters=3)
    leader = net.elect()
    learner = net.ids[3]
    net.handle(leader, Propose(1, b"first"))
    net.advance(0.02)
    in_step = net.core(leader).progress()[learner]  # sent everything (its answer deferred)
    assert in_step.next > net.core(leader).commit_index and in_step.state == "replicate"
    net.down.add(learner)  # what it is sent next is not answered (yet)
    net.handle(leader, Propose(2, b"second"))
    net.advance(0.02)  # committed by the voters, sent to the learner
    core = net.core(leader)
    assert core.progress()[learner].match < core.commit_index
    out = net.handle(leader, ChangeMember(9, learner, Role.VOTER))
    assert any(isinstance(a, Accepted) for a in out)
    net.advance(1.0)  # long silent: no longer in step
    net.handle(leader, Propose(3, b"third"))
    assert learner not in net.core(leader).caught_up(net.now)


def test_learners_do_not_count_toward_the_quorum(make_net) -> None:
    net = make_net(5, voters=3)
    leader = net.elect()
    net.advance(0.1)
    voters = [i for i in range(3) if i != leader]
    net.down |= {net.ids[i] for i in voters}  # two learners are up, but no voter
    net.handle(leader, Propose(1, b"needs voters"))
    net.advance(0.1)
    assert b"needs voters" not in net.applied[net.ids[leader]]
    assert b"needs voters" not in net.applied[net.ids[3]]


def test_the_leader_does_not_demote_itself(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(0.1)
    out = net.handle(leader, ChangeMember(1, net.ids[leader], Role.LEARNER))
    assert out == [Rejected(1, Rejection.INVALID_CHANGE, net.ids[leader])]


def test_a_demoted_voter_stops_campaigning_and_the_rest_elect_without_it(make_net) -> None:
    net = make_net(5)
    leader = net.elect()
    net.advance(0.1)
    gone = (leader + 1) % 5
    net.handle(leader, ChangeMember(1, net.ids[gone], Role.LEARNER))
    net.advance(0.2)
    assert net.core(gone).next_deadline() is None
    net.down.add(net.ids[leader])  # three of the four voters left: still a majority
    net.advance(2.0)
    assert len(net.leaders()) == 1 and net.leaders()[0] not in (leader, gone)
    assert net.core(gone).state is State.FOLLOWER


def test_a_removed_node_cannot_disrupt_the_cluster(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(0.1)
    gone = (leader + 1) % 3
    stayed = 3 - leader - gone
    net.handle(leader, ChangeMember(1, net.ids[gone], Role.REMOVED))
    term = net.core(leader).term
    net.advance(2.0)  # the removed node hears nothing more and keeps asking for votes
    assert net.leaders() == [leader] and net.core(leader).term == term
    assert net.ids[gone] not in net.core(stayed).configuration.members
    refused = net.core(stayed).counters["votes_from_non_voters"]
    assert refused + net.core(leader).counters["votes_from_non_voters"] > 0
