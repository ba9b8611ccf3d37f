"""Probe timeouts from measured round trips (RFC 6298), backoff, and late-timer health."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bzzz_edge.membership import Ack, ConnectionLost, MembershipConfig, Ping, PingReq, Status
from bzzz_edge.membership._rtt import RttTable

from .conftest import Net, deliver, make, sends, tick_until_send


def test_timeout_is_srtt_plus_four_rttvar_within_bounds() -> None:
    table = RttTable(0.05, 3.0, 0.5, 16)
    node = b"n" * 32
    assert table.timeout(node) == 0.5  # not measured: the initial timeout
    table.sample(node, 0.2)  # first sample: SRTT = R, RTTVAR = R / 2
    assert table.timeout(node) == pytest.approx(0.2 + 4 * 0.1)
    table.sample(node, 0.2)
    # RTTVAR = 3/4 * 0.1 + 1/4 * 0; SRTT stays 0.2
    assert table.timeout(node) == pytest.approx(0.2 + 4 * 0.075)
    for _ in range(200):
        table.sample(node, 0.0001)
    assert table.timeout(node) == 0.05  # the floor
    for _ in range(5):
        table.sample(node, 100.0)
    assert table.timeout(node) == 3.0  # the ceiling


def test_a_failed_probe_doubles_the_timeout_until_the_next_sample() -> None:
    table = RttTable(0.05, 3.0, 0.5, 16)
    node = b"n" * 32
    for _ in range(50):
        table.sample(node, 0.01)
    base = table.timeout(node)
    table.back_off(node)
    table.back_off(node)
    assert table.timeout(node) == pytest.approx(4 * base)
    for _ in range(10):
        table.back_off(node)
    assert table.timeout(node) == 3.0
    table.sample(node, 0.01)
    assert table.timeout(node) <= 2 * base


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=50))
def test_timeout_always_within_bounds(samples: list[float]) -> None:
    table = RttTable(0.05, 3.0, 0.5, 16)
    for sample in samples:
        table.sample(b"n" * 32, sample)
        assert 0.05 <= table.timeout(b"n" * 32) <= 3.0


def test_probe_timeouts_follow_each_peers_measured_round_trip(config: MembershipConfig) -> None:
    net = Net([make(0), make(1)])
    net.join_all()
    a, b = net.cores.values()
    assert a.probe_timeout(b.self_id) == config.probe_timeout_initial
    t = 0.0
    for _ in range(20):  # b answers every ping after 300 ms
        out = a.handle(ConnectionLost(b.self_id), t)
        ping = sends(out, Ping, to=b.self_id)
        if not ping:
            t = a.next_deadline() or t
            a.tick(t)
            continue
        deliver(a, b.self_id, Ack(ping[0].message.seq), t + 0.3)
        t += 0.5
    srtt, _ = a.rtt(b.self_id) or (0.0, 0.0)
    assert srtt == pytest.approx(0.3, rel=0.05)
    assert a.probe_timeout(b.self_id) >= 0.3


def test_a_late_ack_still_teaches_the_round_trip(config: MembershipConfig) -> None:
    net, cores = Net([make(0), make(1)]), None
    net.join_all()
    a, b = net.cores.values()
    net.down.add(b.self_id)
    ping = sends(a.handle(ConnectionLost(b.self_id), 1.0), Ping, to=b.self_id)[0]
    while a.counters["probe_failures"] == 0:
        a.tick(a.next_deadline() or 0.0)
    assert a.status_of(b.self_id) is Status.SUSPECT
    # The link got slow, not dead: the ack comes after the probe ended.
    deliver(a, b.self_id, Ack(ping.message.seq), 1.0 + 1.5)
    assert a.counters["late_acks"] == 1
    srtt, _ = a.rtt(b.self_id) or (0.0, 0.0)
    assert srtt == pytest.approx(1.5)
    assert a.probe_timeout(b.self_id) >= 1.5
    del cores


def test_a_late_tick_defers_verdicts_and_counts_against_local_health(
    config: MembershipConfig,
) -> None:
    net = Net([make(0), make(1), make(2)])
    net.join_all()
    a, b, _ = net.cores.values()
    t, pings = tick_until_send(a, Ping)
    due = a.next_deadline()
    assert due is not None
    # The event loop was starved for two seconds: the ack sits unread while the timer fires.
    late = due + 2.0
    out = a.tick(late)
    assert sends(out, PingReq) == [] and a.counters["late_ticks"] == 1
    assert a.local_health == 1
    assert all(m.status is Status.ALIVE for m in a.members())
    # Then the queued ack is read, before the deferred verdict falls due.
    deliver(a, pings[0].to, Ack(pings[0].message.seq), late + 0.001)
    a.tick(a.next_deadline() or late)
    assert a.counters["probe_failures"] == 0
    assert all(m.status is Status.ALIVE for m in a.members())
    del t, b
