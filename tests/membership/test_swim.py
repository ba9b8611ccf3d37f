"""The SWIM core on its own: cores wired back to back by hand, no simulator, no sockets."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import LocalProtocolError
from bzzz_edge.membership import (
    Ack,
    AliveUpdate,
    ConnectionLost,
    DeadUpdate,
    Gossip,
    Join,
    Leave,
    MemberEvent,
    MemberForgotten,
    MembershipConfig,
    Nack,
    Offence,
    Penalise,
    Ping,
    PingReq,
    Received,
    Status,
    SuspectUpdate,
    Sync,
    SyncEntry,
    UpdateSelf,
    encode_message,
    min_suspicion_timeout,
)

from .conftest import Net, addr, deliver, events, make, nid, sends, tick_until_send

META = {"proto": 1}


def joined(n: int, **kwargs: object) -> tuple[Net, list]:
    cores = [make(i, **kwargs) for i in range(n)]  # type: ignore[arg-type]
    net = Net(cores)
    net.join_all()
    return net, cores


# --- probing ------------------------------------------------------------------------------------


def test_probe_acked_directly_needs_no_indirect_probe(config: MembershipConfig) -> None:
    _, (a, b) = joined(2)
    t, pings = tick_until_send(a, Ping, to=b.self_id)
    assert len(pings) == 1 and pings[0].message.target == b.self_id
    acks = sends(deliver(b, a.self_id, pings[0].message, t), Ack, to=a.self_id)
    assert [ack.message.seq for ack in acks] == [pings[0].message.seq]
    deliver(a, b.self_id, acks[0].message, t + 0.001)
    out = a.tick(t + config.probe_interval)
    assert not sends(out, PingReq)
    assert a.status_of(b.self_id) is Status.ALIVE
    assert a.counters["probe_failures"] == 0


def test_missed_ack_leads_to_ping_req_then_suspect_then_dead(config: MembershipConfig) -> None:
    net, cores = joined(4)
    net.advance(2.0)  # every member probed the target (and measured it) at least once
    target = cores[3]
    # Timeouts come from measured round trips (at the floor on this fast network).
    rtos = {core.self_id: core.probe_timeout(target.self_id) for core in cores[:3]}
    assert set(rtos.values()) == {config.probe_timeout_min}
    net.down.add(target.self_id)
    net.advance(10.0)
    # Follow the member whose probe of the target ended first (the others may learn of the
    # suspicion from it before their own probes end).
    first_req = next(origin for t, origin, act in net.log
                     if t > 2.0 and isinstance(getattr(act, "message", None), PingReq))
    a = next(core for core in cores if core.self_id == first_req)
    relays = [core.self_id for core in cores[:3] if core is not a]
    rto = rtos[a.self_id]
    mine = [(t, act) for t, origin, act in net.log if origin == a.self_id and t > 2.0]
    pings = [t for t, act in mine
             if isinstance(getattr(act, "message", None), Ping) and act.to == target.self_id]
    ping_reqs = [act for t, act in mine if isinstance(getattr(act, "message", None), PingReq)]
    assert {act.to for act in ping_reqs} == set(relays)
    req_time = next(t for t, act in mine if isinstance(getattr(act, "message", None), PingReq))
    # Its own direct ping went unanswered for one probe timeout (other pings to the target
    # may be relays for the other members' probes).
    assert any(t == pytest.approx(req_time - rto) for t in pings)
    assert a.probe_timeout(target.self_id) > rto  # backed off after the failed probe
    # Both relays answered with nacks, so a does not blame its own health.
    assert a.local_health == 0
    about = [(t, ev) for t, origin, ev in net.events_about(target.self_id) if origin == a.self_id]
    suspected = next(t for t, ev in about if ev.new_status is Status.SUSPECT)
    dead = next(t for t, ev in about if ev.new_status is Status.DEAD)
    slowest_relay = max(a.probe_timeout(relay) for relay in relays)
    assert suspected == pytest.approx(req_time + rto + slowest_relay)
    low = min_suspicion_timeout(config, 4, rto)
    assert low - 1e-9 <= dead - suspected <= low * config.suspicion_max_timeout_mult + 1e-9
    for core in cores[:3]:
        assert core.status_of(target.self_id) is Status.DEAD


def test_connection_lost_triggers_an_immediate_probe_once() -> None:
    _, (a, b) = joined(2)
    out = a.handle(ConnectionLost(b.self_id), 5.0)
    assert len(sends(out, Ping, to=b.self_id)) == 1
    assert sends(a.handle(ConnectionLost(b.self_id), 5.01), Ping) == []
    assert a.counters["hint_probes"] == 1
    assert a.status_of(b.self_id) is Status.ALIVE  # a hint, not a verdict


def test_failed_probes_without_nacks_stretch_local_health(config: MembershipConfig) -> None:
    net, cores = joined(3)
    a = cores[0]
    net.down |= {cores[1].self_id, cores[2].self_id}
    pings = sends(a.handle(ConnectionLost(cores[1].self_id), 1.0), Ping)
    while a.counters["probe_failures"] == 0:  # ping-req to the other member, down too
        t = a.next_deadline()
        pings += sends(a.tick(t), Ping)
    assert a.local_health == 1  # the relay never even nacked
    net.down.clear()
    for ping in pings:  # the probes still in flight end well; others' acks are late
        deliver(a, ping.to, Ack(ping.message.seq), t + 0.001)
    assert a.local_health == 0


def test_a_relays_late_nack_takes_back_the_health_it_cost() -> None:
    # The relay waits its own timeout for the target, which may be longer than our estimate
    # of it: its nack then comes after our probe ended, and says nothing about our link.
    net, cores = joined(3)
    a, relay, target = cores
    net.down.add(target.self_id)
    net.down.add(relay.self_id)  # the relay answers nothing in time
    assert sends(a.handle(ConnectionLost(target.self_id), 1.0), Ping, to=target.self_id)
    reqs: list = []
    while a.status_of(target.self_id) is Status.ALIVE:  # until the probe of the target ends
        t = a.next_deadline()
        reqs += [r for r in sends(a.tick(t), PingReq) if r.message.target == target.self_id]
    health = a.local_health  # the silent relay counted against us (so may other probes)
    assert [r.to for r in reqs] == [relay.self_id] and health >= 1
    deliver(a, relay.self_id, Nack(reqs[0].message.seq), t + 0.3)
    assert a.local_health == health - 1
    deliver(a, relay.self_id, Nack(reqs[0].message.seq), t + 0.4)  # taken back once only
    assert a.local_health == health - 1 and a.counters["late_nacks"] == 2


# --- suspicion, refutation, incarnations --------------------------------------------------------


def test_suspected_node_refutes_through_the_buddy_system() -> None:
    _, (a, b, c) = joined(3)
    deliver(b, c.self_id, Gossip((SuspectUpdate(a.self_id, 0, c.self_id),)), 1.0)
    assert b.status_of(a.self_id) is Status.SUSPECT
    ping = sends(b.handle(ConnectionLost(a.self_id), 1.0), Ping, to=a.self_id)[0]
    assert ping.message.updates[0] == SuspectUpdate(a.self_id, 0, b.self_id)
    out = deliver(a, b.self_id, ping.message, 1.001)
    assert a.incarnation == 1
    assert a.counters["refutations"] == 1
    assert [(e.node, e.new_status, e.incarnation) for e in events(out)] == [
        (a.self_id, Status.ALIVE, 1)
    ]
    ack = sends(out, Ack, to=b.self_id)[0]
    refutation = AliveUpdate(a.self_id, 1, addr(0), META)
    assert refutation in ack.message.updates
    # A refutation races every suspicion timer, so it also goes to every member directly.
    direct = sends(out, Gossip)
    assert {g.to for g in direct} == {b.self_id, c.self_id}
    assert all(g.message.updates == (refutation,) for g in direct)
    back = events(deliver(b, a.self_id, ack.message, 1.002))
    assert [(e.old_status, e.new_status, e.incarnation) for e in back] == [
        (Status.SUSPECT, Status.ALIVE, 1)
    ]


def test_news_about_an_older_life_is_not_refuted() -> None:
    a = make(0, incarnation=5)
    out = deliver(a, nid(1), Gossip((DeadUpdate(a.self_id, 4, nid(1)),)), 1.0)
    assert a.incarnation == 5 and events(out) == []
    assert a.counters["refutations"] == 0
    # The sender still holds old news about us, so it is told the current state directly.
    replies = sends(out, Gossip, to=nid(1))
    assert [g.message.updates for g in replies] == [(AliveUpdate(a.self_id, 5, addr(0), META),)]


def test_stale_news_is_ignored_and_newer_news_replaces_older_in_the_queue() -> None:
    _, (a, b) = joined(2)
    c = nid(7)
    x = b.self_id

    def feed(*updates: object) -> list[MemberEvent]:
        return events(deliver(a, c, Gossip(tuple(updates)), 1.0))  # type: ignore[arg-type]

    assert feed(AliveUpdate(x, 5, addr(1), META)) == []  # same status, address and meta
    assert a.member(x).incarnation == 5
    assert feed(AliveUpdate(x, 4, addr(1), META)) == []
    assert feed(SuspectUpdate(x, 4, c), DeadUpdate(x, 4, c)) == []
    assert a.status_of(x) is Status.ALIVE and a.member(x).incarnation == 5
    assert [e.new_status for e in feed(SuspectUpdate(x, 5, c))] == [Status.SUSPECT]
    assert feed(AliveUpdate(x, 5, addr(1), META)) == []  # same incarnation: suspicion stands
    assert [e.new_status for e in feed(AliveUpdate(x, 6, addr(1), META))] == [Status.ALIVE]
    assert [e.new_status for e in feed(DeadUpdate(x, 6, c))] == [Status.DEAD]
    assert feed(AliveUpdate(x, 6, addr(1), META), SuspectUpdate(x, 6, c)) == []
    assert a.status_of(x) is Status.DEAD
    rejoin = feed(AliveUpdate(x, 7, addr(1), META))
    assert [(e.old_status, e.new_status, e.incarnation) for e in rejoin] == [
        (Status.DEAD, Status.ALIVE, 7)
    ]
    # Only the newest news about x is still queued for dissemination.
    _, gossip = tick_until_send(a, Gossip)
    about_x = [u for u in gossip[0].message.updates if u.node == x]
    assert about_x == [AliveUpdate(x, 7, addr(1), META)]


def test_confirmations_from_other_members_shorten_a_suspicion(config: MembershipConfig) -> None:
    # n = 6 members, so suspicion_mult - 2 = 3 confirmations are expected.
    def suspect_with(confirmers: int) -> float:
        a = make(0)
        x, others = nid(5), [nid(i) for i in range(1, 5)]
        for node in [*others, x]:
            deliver(a, node, Gossip((AliveUpdate(node, 0, addr(1), META),)), 0.0)
        deliver(a, others[0], Gossip((SuspectUpdate(x, 0, others[0]),)), 1.0)
        for source in others[1 : 1 + confirmers]:
            deliver(a, source, Gossip((SuspectUpdate(x, 0, source),)), 1.0)
        t = 1.0
        while a.status_of(x) is Status.SUSPECT:
            t = a.next_deadline()
            # Every member, x included, acks a's own probes: an ack is no refutation, and a's
            # probes must not add confirmations of their own here.
            for ping in sends(a.tick(t), Ping):
                deliver(a, ping.to, Ack(ping.message.seq), t)
        return t - 1.0

    # x was never measured, so its probe timeout is the initial one.
    low = min_suspicion_timeout(config, 6, config.probe_timeout_initial)
    high = low * config.suspicion_max_timeout_mult
    assert suspect_with(0) == pytest.approx(high)
    assert low < suspect_with(2) < suspect_with(1) < high
    assert suspect_with(3) == pytest.approx(low)
    assert suspect_with(4) == pytest.approx(low)


def test_node_restarting_above_its_old_incarnation_is_alive_again() -> None:
    net, (a, b) = joined(2)
    deliver(a, nid(9), Gossip((DeadUpdate(b.self_id, 0, nid(9)),)), 1.0)
    assert a.status_of(b.self_id) is Status.DEAD
    reborn = make(1, now=2.0, incarnation=1)
    net.cores[b.self_id] = reborn
    net.run(reborn.handle(Join(a.self_id, addr(0)), 2.0), reborn.self_id, 2.0)
    assert a.member(b.self_id).status is Status.ALIVE
    assert a.member(b.self_id).incarnation == 1
    assert reborn.incarnation == 1 and reborn.counters["refutations"] == 0


def test_a_restarted_node_is_probed_next_so_its_round_trip_is_measured_at_once() -> None:
    net, cores = joined(6)
    a, b = cores[0], cores[5]
    t = net.advance(3.0)
    deliver(a, nid(9), Gossip((DeadUpdate(b.self_id, 0, nid(9)),)), t)
    assert a.status_of(b.self_id) is Status.DEAD
    reborn = make(5, now=t, incarnation=1)
    net.cores[b.self_id] = reborn
    net.run(reborn.handle(Join(a.self_id, addr(0)), t), reborn.self_id, t)
    assert a.status_of(b.self_id) is Status.ALIVE
    # a's very next probe is of the returned node, not one a whole round (five probes) later.
    _, pings = tick_until_send(a, Ping)
    assert [p.to for p in pings] == [b.self_id]


def test_node_restarting_too_low_catches_up_by_refuting() -> None:
    net, (a, b) = joined(2)
    deliver(a, nid(9), Gossip((DeadUpdate(b.self_id, 3, nid(9)),)), 1.0)
    reborn = make(1, now=2.0, incarnation=0)  # lost its persisted incarnation
    net.cores[b.self_id] = reborn
    net.run(reborn.handle(Join(a.self_id, addr(0)), 2.0), reborn.self_id, 2.0)
    assert reborn.incarnation == 4
    net.advance(3.0)
    assert a.member(b.self_id).status is Status.ALIVE
    assert a.member(b.self_id).incarnation == 4


# --- joining, leaving, metadata -----------------------------------------------------------------


def test_join_exchanges_full_state_and_retries_until_answered(config: MembershipConfig) -> None:
    a = make(0)
    assert a.next_deadline() is None  # alone: nothing to do
    assert a.handle(Join(a.self_id, addr(0)), 0.0) == []  # discovery sees itself
    out = a.handle(Join(nid(1), addr(1)), 0.0)
    syncs = sends(out, Sync, to=nid(1))
    assert len(syncs) == 1 and not syncs[0].message.reply and syncs[0].address == addr(1)
    assert syncs[0].message.entries[0].node == a.self_id
    assert a.handle(Join(nid(1), addr(1)), 0.1) == []  # already pending
    retries = 0
    t = 0.0
    while (t := a.next_deadline()) is not None:
        retries += len(sends(a.tick(t), Sync, to=nid(1)))
    assert retries == config.join_attempts - 1
    b = make(1)
    reply = sends(deliver(b, a.self_id, syncs[0].message, t), Sync)[0]
    assert reply.message.reply
    out = deliver(a, b.self_id, reply.message, t)
    assert [(e.node, e.old_status, e.new_status) for e in events(out)] == [
        (b.self_id, None, Status.ALIVE)
    ]
    assert sends(out, Sync) == []  # a reply is not answered


def test_message_from_unknown_member_starts_a_state_exchange() -> None:
    a, b = make(0), make(1)
    out = deliver(a, b.self_id, Ping(7, a.self_id), 0.5)
    assert [s.message.seq for s in sends(out, Ack)] == [7]
    assert len(sends(out, Sync, to=b.self_id)) == 1


def test_leave_tells_everyone_and_stops_the_node() -> None:
    net, (a, b, c) = joined(3)
    out = a.handle(Leave(), 2.0)
    notices = sends(out, Gossip)
    assert {s.to for s in notices} == {b.self_id, c.self_id}
    assert all(s.message.updates == (DeadUpdate(a.self_id, 0, a.self_id),) for s in notices)
    assert a.has_left and a.status_of(a.self_id) is Status.LEFT
    net.run(out, a.self_id, 2.0)
    assert b.status_of(a.self_id) is Status.LEFT and c.status_of(a.self_id) is Status.LEFT
    # Nobody probes a departed member, and it refutes nothing.
    net.advance(5.0)
    later = [act for t, origin, act in net.log if t > 2.0 and getattr(act, "to", None) == a.self_id]
    assert not [act for act in later if isinstance(act.message, Ping)]
    assert a.counters["refutations"] == 0
    assert a.next_deadline() is None
    with pytest.raises(LocalProtocolError):
        a.handle(Join(b.self_id, addr(1)), 5.0)


def test_update_self_spreads_new_metadata_with_a_higher_incarnation() -> None:
    net, (a, b) = joined(2)
    out = a.handle(UpdateSelf(meta={"proto": 2, "role": "qa"}), 1.0)
    assert [(e.node, e.incarnation, dict(e.meta)) for e in events(out)] == [
        (a.self_id, 1, {"proto": 2, "role": "qa"})
    ]
    net.run(out, a.self_id, 1.0)
    net.advance(2.0)
    seen = b.member(a.self_id)
    assert seen.incarnation == 1 and dict(seen.meta) == {"proto": 2, "role": "qa"}
    with pytest.raises(LocalProtocolError, match="meta"):
        a.handle(UpdateSelf(meta={"x" * 100: 1}), 2.0)


def test_tombstones_expire_into_member_forgotten() -> None:
    config = dataclasses.replace(make(0).config, tombstone_time=5.0, reconnect_interval=1.0)
    a = make(0, config=config)
    b_alive = AliveUpdate(nid(1), 0, addr(1), META)
    deliver(a, nid(1), Gossip((b_alive,)), 0.0)
    deliver(a, nid(2), Gossip((DeadUpdate(nid(1), 0, nid(2)),)), 0.0)
    forgotten: list[float] = []
    t = 0.0
    while (t := a.next_deadline()) is not None and t < 20:
        if any(isinstance(x, MemberForgotten) for x in a.tick(t)):
            forgotten.append(t)
    assert len(forgotten) == 1 and 5.0 <= forgotten[0] <= 6.0
    assert a.member(nid(1)) is None


# --- garbage and misuse -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        None,
        b"\x00\x01",
        [],
        [1],
        [1, 1, 5, nid(0)],  # missing updates
        [1, 1, -1, nid(0), []],  # negative seq
        [1, 1, 5, b"short", []],  # bad node ID
        [3, 1, 5, [[1, nid(2), 0, "h", 70000, {}]]],  # port out of range
        [3, 1, 5, [[2, nid(2), True, nid(3)]]],  # bool incarnation
        [5, 1, [[9, nid(2)]]],  # unknown update kind
        [6, 1, "yes", []],  # reply flag not a bool
        [6, 1, False, [[nid(2), 0, 9, "h", 1, {}]]],  # unknown status
    ],
)
def test_malformed_message_is_counted_not_raised(payload: object) -> None:
    a = make(0)
    assert a.handle(Received(nid(1), payload), 1.0) == [Penalise(nid(1), Offence.MALFORMED)]
    assert a.counters["malformed"] == 1


def test_protocol_violations_are_counted_not_raised() -> None:
    _, (a, b) = joined(2)
    stranger = nid(5)
    assert deliver(a, b.self_id, Ping(1, stranger), 1.0) == []  # ping for someone else
    assert deliver(a, b.self_id, PingReq(1, a.self_id), 1.0) == []  # probe yourself
    assert deliver(a, a.self_id, Gossip(), 1.0) == []  # from ourselves
    t, pings = tick_until_send(a, Ping, to=b.self_id)
    deliver(a, stranger, Ack(pings[0].message.seq), t)  # ack from a node nobody asked
    assert a.counters["protocol_errors"] == 4
    assert a.counters["late_acks"] == 0


def test_unknown_message_kinds_and_versions_are_ignored_and_counted() -> None:
    a = make(0)
    assert a.handle(Received(nid(1), [99, 1, "future"]), 1.0) == []
    assert a.handle(Received(nid(1), [1, 2, "v2 ping"]), 1.0) == []
    assert a.counters["unknown_messages"] == 2
    assert a.counters["malformed"] == 0


def test_relay_answers_nack_when_its_ping_goes_unanswered(config: MembershipConfig) -> None:
    _, (a, b, c) = joined(3)
    out = deliver(b, a.self_id, PingReq(42, c.self_id), 1.0)
    relay_ping = sends(out, Ping, to=c.self_id)[0]
    nacks = sends(b.tick(1.0 + b.probe_timeout(c.self_id)), Nack, to=a.self_id)
    assert [n.message.seq for n in nacks] == [42]
    # An ack that arrives after the nack is late, not relayed.
    assert sends(deliver(b, c.self_id, Ack(relay_ping.message.seq), 1.1), Ack) == []


def test_invalid_arguments_and_events_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError, match="self_id"):
        make(0).__class__(b"short", address=addr(0), now=0.0)
    with pytest.raises(LocalProtocolError, match="incarnation"):
        make(0, incarnation=-1)
    a = make(0)
    with pytest.raises(LocalProtocolError, match="port"):
        a.handle(Join(nid(1), addr(1).__class__("h", 70000)), 0.0)
    with pytest.raises(LocalProtocolError, match="cannot handle"):
        a.handle("join", 0.0)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------------

_IDS = [nid(i) for i in range(4)]  # nid(0) is the core under test
_ids = st.sampled_from(_IDS)
_incs = st.integers(min_value=0, max_value=4)
_addrs = st.sampled_from([addr(1), addr(2)])
_metas = st.sampled_from([{}, {"proto": 1}, {"proto": 2}])
_updates = st.one_of(
    st.builds(AliveUpdate, _ids, _incs, _addrs, _metas),
    st.builds(SuspectUpdate, _ids, _incs, _ids),
    st.builds(DeadUpdate, _ids, _incs, _ids),
)
_piggy = st.lists(_updates, max_size=4).map(tuple)
_seqs = st.integers(min_value=0, max_value=3)
_entries = st.lists(
    st.builds(SyncEntry, _ids, _incs, st.sampled_from(list(Status)), _addrs, _metas), max_size=4
).map(tuple)
_messages = st.one_of(
    st.builds(Ping, _seqs, _ids, _piggy),
    st.builds(PingReq, _seqs, _ids, _piggy),
    st.builds(Ack, _seqs, _piggy),
    st.builds(Nack, _seqs, _piggy),
    st.builds(Gossip, _piggy),
    st.builds(Sync, st.booleans(), _entries),
)
_steps = st.lists(
    st.tuples(st.sampled_from(_IDS[1:]), _messages, st.floats(min_value=0.0, max_value=0.3)),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_any_sequence_of_well_formed_messages_keeps_the_core_consistent(steps: list) -> None:
    core = make(0)
    now, incarnation = 0.0, 0
    for sender, message, dt in steps:
        now += dt
        core.handle(Received(sender, encode_message(message)), now)
        core.tick(now)
        deadline = core.next_deadline()
        assert deadline is None or deadline > now  # every due timer was served
        assert core.status_of(core.self_id) is Status.ALIVE  # never believes itself failed
        assert core.incarnation >= incarnation  # incarnations only grow
        incarnation = core.incarnation
        live = {m.node for m in core.alive_members()}
        assert core.num_live() == len(live) and core.self_id in live
    assert core.counters["malformed"] == 0
