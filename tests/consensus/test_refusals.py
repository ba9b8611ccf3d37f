"""What a follower's refusals and snapshots cost the leader, and what a learner answers after a
snapshot (found by a review, review17). A member (learners are members) that sends tiny
refusals without end must not get a full append, let alone the whole snapshot (up to 64 MiB),
for each: refusals are answered with a probe at once only a few times a heartbeat, a refusal
or a snapshot answer that answers no snapshot on its way is ignored, and one snapshot goes
out per election timeout at most. Simulated cores wired back to back (no wall clock)."""

from __future__ import annotations

import msgpack
import pytest

from bzzz_edge.consensus import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    Propose,
    Received,
    Send,
    SnapshotResponse,
    encode_message,
    lan,
)
from bzzz_edge.consensus._state import QUICK_PROBES


def _sent_to(net, leader: int, peer: bytes, since: int) -> list[object]:  # type: ignore[no-untyped-def]
    return [a.message for a in net.actions[net.ids[leader]][since:]
            if isinstance(a, Send) and a.to == peer]


def _wire(message: object) -> object:
    return msgpack.unpackb(msgpack.packb(encode_message(message)))


def test_refusals_from_a_member_do_not_each_cost_a_snapshot(make_net) -> None:  # type: ignore[no-untyped-def]
    net = make_net(4, voters=3, config=lan(snapshot_threshold=50, snapshot_trailing=10))
    leader = net.elect()
    net.advance(0.5)
    insider = net.ids[3]  # a learner, so a member
    net.down.add(insider)  # it takes nothing: its match stays where it was
    for ref in range(200):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        net.deliver()
    core = net.core(leader)
    assert core.snapshot_index > core.progress()[insider].match
    since = len(net.actions[net.ids[leader]])
    refusal = _wire(AppendResponse(core.term, False, 0))
    answer = _wire(SnapshotResponse(core.term, 0))
    for i in range(100):  # within one instant: a burst of 100 tiny frames of both kinds
        message = refusal if i % 2 else answer
        net.perform(net.ids[leader], core.handle(Received(insider, message), net.now))
    sent = _sent_to(net, leader, insider, since)
    snapshots = sum(isinstance(m, InstallSnapshot) for m in sent)
    appends = sum(isinstance(m, AppendEntries) for m in sent)
    # A probe (or a snapshot) per heartbeat interval is what a peer in PROBE is owed.
    assert snapshots <= 1 and snapshots + appends <= 2, (snapshots, appends)


def test_refusals_without_end_get_a_few_probes_at_once_then_one_a_heartbeat(make_net) -> None:  # type: ignore[no-untyped-def]
    net = make_net(4, voters=3, config=lan())
    leader = net.elect()
    net.advance(0.5)
    insider = net.ids[3]
    for ref in range(20):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        net.deliver()
    core = net.core(leader)
    since = len(net.actions[net.ids[leader]])
    refusal = _wire(AppendResponse(core.term, False, 0))
    for _ in range(100):
        net.perform(net.ids[leader], core.handle(Received(insider, refusal), net.now))
    probes = [m for m in _sent_to(net, leader, insider, since) if isinstance(m, AppendEntries)]
    assert 1 <= len(probes) <= QUICK_PROBES, len(probes)
    # An honest learner still backs the leader up and catches up: the refusals stop, the
    # next probe is answered, and it is back in step.
    net.advance(2 * net.config.heartbeat_interval)
    assert core.progress()[insider].state == "replicate"
    assert core.progress()[insider].match == core.commit_index


def test_the_probe_after_a_snapshot_is_answered_at_once(make_net) -> None:  # type: ignore[no-untyped-def]
    # A learner answers one append in eight (LEARNER_ANSWERS_EVERY) once it answered this
    # leader; a snapshot means the leader lost its position, so the probe that follows must be
    # answered at once, not left in PROBE for seven heartbeats (2.8 s with lan()).
    net = make_net(4, voters=3, config=lan(snapshot_threshold=50, snapshot_trailing=10))
    leader = net.elect()
    net.advance(0.5)
    learner = net.ids[3]
    core = net.core(leader)
    assert core.progress()[learner].state == "replicate"
    deaf = {"on": True}

    def lose_learner_answers(sender: bytes, dest: bytes, value: object) -> bool:
        return deaf["on"] and sender == learner and isinstance(value, list) and value[0] == 4

    # The learner takes every append but its answers are lost for a while: the leader's
    # pipeline to it fills and the leader compacts past what it sent. No refusal on the way,
    # so the learner still holds this term's last answer.
    net.drop = lose_learner_answers
    for ref in range(300):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        net.deliver()
    assert core.snapshot_index > core.progress()[learner].next
    deaf["on"] = False
    while net.core(3).counters["snapshots_installed"] == 0:
        net.advance(0.005)
    installed_at = net.now
    hb = net.config.heartbeat_interval
    while core.progress()[learner].state != "replicate" and net.now - installed_at < 5 * hb:
        net.advance(0.005)
    assert net.now - installed_at < hb, (
        f"PROBE for {net.now - installed_at:.2f} s after the snapshot; "
        f"{net.core(3).counters['learner_answers_deferred']} answers deferred")


SNAPSHOT_RESPONSE = 6  # the wire tag of SnapshotResponse (consensus/_messages.py)


# With pre-vote: stalled only. Without: seeds 5 and 9 had the follower's election timeout run
# out first, and the leader was deposed.
@pytest.mark.parametrize(("pre_vote", "seed"), [(True, 0), (False, 5), (False, 9)])
def test_a_follower_needing_a_second_snapshot_still_hears_the_leader(  # type: ignore[no-untyped-def]
        make_net, pre_vote: bool, seed: int) -> None:
    # One snapshot per election timeout (above) must not hold back the second snapshot a
    # follower needs when the leader compacted past the first while it travelled: it heard
    # nothing for ~1.2 s, and without pre-vote it deposed the leader (a review, review17b).
    config = lan(snapshot_threshold=20, snapshot_trailing=0, pre_vote=pre_vote)
    net = make_net(3, config=config, seed=seed)
    leader = net.elect()
    net.advance(0.2)
    core = net.core(leader)
    term = core.term
    f = (leader + 1) % 3
    follower = net.ids[f]
    net.down.add(follower)
    ref = 0
    for _ in range(60):  # the leader snapshots and compacts past the follower's log
        net.handle(leader, Propose(ref, b"c%d" % ref))
        ref += 1
        net.deliver()
    held: list[object] = []

    def hold_snapshot_answer(sender: bytes, dest: bytes, value: object) -> bool:
        if sender == follower and isinstance(value, list) and value[0] == SNAPSHOT_RESPONSE \
                and not held:
            held.append(value)
            return True
        return False

    net.drop = hold_snapshot_answer
    net.down.discard(follower)
    while not held:  # the next heartbeat probes it, it refuses, the snapshot goes out
        net.advance(0.005)
    net.drop = None
    # While its answer is on the way back, the leader takes another snapshot and compacts.
    for _ in range(30):
        net.handle(leader, Propose(ref, b"c%d" % ref))
        ref += 1
        net.deliver()
    assert core.snapshot_index > net.core(f).commit_index
    since = len(net.actions[net.ids[leader]])
    answered_at = net.now
    net.perform(net.ids[leader], core.handle(Received(follower, held[0]), net.now))
    # The follower must hear from the leader (the second snapshot, or at least a heartbeat)
    # well within its election timeout, and catch up; the leader must stay leader.
    heard_at = None
    while net.now - answered_at < 3 * config.election_timeout_max:
        sent = [a.message for a in net.actions[net.ids[leader]][since:]
                if isinstance(a, Send) and a.to == follower
                and isinstance(a.message, (AppendEntries, InstallSnapshot))]
        if sent and heard_at is None:
            heard_at = net.now
        if net.core(f).commit_index >= core.commit_index:
            break
        net.advance(0.005)
    silence = (heard_at if heard_at is not None else net.now) - answered_at
    deposed = core.term != term or net.leaders() != [leader]
    assert silence < 2 * config.heartbeat_interval and not deposed, (
        f"silent for {silence:.2f} s; leader deposed: {deposed} (term {term} -> "
        f"{max(net.core(i).term for i in range(3))})")
