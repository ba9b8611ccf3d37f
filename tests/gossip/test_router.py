"""The pub/sub router core, wired back to back: delivery, repair, meshes, gaps, policies."""

from __future__ import annotations

import dataclasses

import pytest

from bzzz_edge.errors import LocalProtocolError
from bzzz_edge.gossip import (
    GAP_UNKNOWN,
    Control,
    Deliver,
    Publish,
    Received,
    SetTopicPolicy,
    Unsubscribe,
    Validation,
    encode_control,
)

from .conftest import TOPIC, Net, config, message, nid


def _seqs(net: Net, i: int, origin: int) -> list[int]:
    return [d.message.seq for d in net.delivered(i) if d.message.origin == nid(origin)]


def test_full_mesh_every_subscriber_gets_every_message_once_in_order_one_copy_each() -> None:
    net = Net(5)
    net.connect_all()
    net.subscribe()
    net.advance(0.2)  # neighbour lists exchanged
    sent_before = net.gossip_sent()
    for seq in range(1, 11):
        net.publish(seq % 5, seq)
    for i in range(5):
        assert sorted(d.message.seq for d in net.delivered(i)) == list(range(1, 11))
        for origin in range(5):
            assert _seqs(net, i, origin) == sorted(_seqs(net, i, origin))
    # The origin reaches everyone itself; nobody relays: exactly one copy per remote delivery.
    assert net.gossip_sent() - sent_before == 10 * 4


def test_a_message_everyone_holds_is_left_alone_yet_reaches_a_later_subscriber() -> None:
    net = Net(3)
    net.connect(0, 1)
    net.subscribe(nodes=(0, 1))
    cfg = net.routers[nid(0)].config
    net.advance(cfg.heartbeat_interval)
    m = net.publish(0, 1)
    net.advance(cfg.heartbeat_interval)
    # Every subscribed peer holds it: lazy repair stops looking at it, at both nodes.
    for i in (0, 1):
        entry = net.routers[nid(i)].cache.get(m.msg_id)
        assert entry is not None and entry.announced
    net.connect(1, 2)  # a newcomer, not a peer of the origin
    net.subscribe(nodes=(2,))
    net.advance(cfg.refresh_interval)
    assert [d.message.seq for d in net.delivered(2)] == [1]


def test_own_publication_is_delivered_locally_with_zero_hops_and_others_see_one() -> None:
    net = Net(2)
    net.connect_all()
    net.subscribe()
    m = net.publish(0, 1)
    assert net.delivered(0) == [Deliver(m, 0, 0)]
    assert net.delivered(1) == [Deliver(m, 1, 0)]


def test_a_topic_reaches_only_its_subscribers_and_stops_after_unsubscribe() -> None:
    net = Net(4)
    net.connect_all()
    net.subscribe(nodes=[0, 1])
    net.subscribe("other", nodes=[2, 3])
    net.publish(0, 1)
    assert [len(net.delivered(i)) for i in range(4)] == [1, 1, 0, 0]
    assert not any(s[1] in (2, 3) for s in net.sent if hasattr(s[2], "seq"))
    net.handle(1, Unsubscribe(TOPIC))
    net.publish(0, 2)
    assert [len(net.delivered(i)) for i in range(4)] == [2, 1, 0, 0]


def test_line_topology_relays_hop_by_hop() -> None:
    net = Net(4)
    for a in range(3):
        net.connect(a, a + 1)
    net.subscribe()
    net.advance(0.2)
    net.publish(0, 1)
    assert [[d.hops for d in net.delivered(i)] for i in range(4)] == [[0], [1], [2], [3]]


def test_topic_hop_limit_stops_forwarding_and_repair() -> None:
    net = Net(4)
    for a in range(3):
        net.connect(a, a + 1)
    net.subscribe()
    for i in range(4):
        net.handle(i, SetTopicPolicy(TOPIC, hop_limit=2))
    net.advance(0.2)
    net.publish(0, 1)
    net.advance(1.0)  # heartbeats must not repair past the limit either
    assert [len(net.delivered(i)) for i in range(4)] == [1, 1, 1, 0]


def test_lost_message_is_repaired_by_ihave_iwant_within_a_refresh_interval() -> None:
    net = Net(3)
    net.connect_all()
    net.subscribe()
    net.advance(0.2)
    net.down.add((0, 2))  # the origin's copy to node 2 is lost
    m = net.publish(0, 1)
    assert net.delivered(2) == []
    net.down.clear()
    cfg = net.routers[nid(0)].config
    net.advance(cfg.refresh_interval + cfg.heartbeat_interval)
    assert [dataclasses.replace(d.message, hops=0) for d in net.delivered(2)] == [m]
    assert len(net.delivered(2)) == 1


def test_non_mesh_peers_are_reached_by_heartbeat_ihave() -> None:
    net = Net(16, config(mesh_low=2, mesh_degree=3, mesh_high=4))
    for i in range(1, 16):  # a star: the hub keeps only 3 of its 15 peers in its mesh
        net.connect(0, i)
    net.subscribe()
    net.advance(0.3)
    net.publish(1, 1)  # a leaf publishes; the hub pushes to its mesh only
    eager = sum(1 for i in range(16) if net.delivered(i))
    assert eager <= 1 + 1 + 3
    cfg = net.routers[nid(0)].config
    net.advance(cfg.heartbeat_interval)
    assert sum(1 for i in range(16) if net.delivered(i)) > eager  # IHAVE, IWANT, message
    net.advance(cfg.refresh_interval)
    assert all(len(net.delivered(i)) == 1 for i in range(16))


def test_late_subscriber_is_told_about_cached_messages() -> None:
    net = Net(2)
    net.connect_all()
    net.subscribe(nodes=[0])
    m = net.publish(0, 1)
    net.subscribe(nodes=[1])
    assert [d.message for d in net.delivered(1)] == [m]


def test_gaps_in_an_origins_sequence_are_counted_and_reported_per_delivery() -> None:
    net = Net(2)
    net.connect_all()
    net.subscribe()
    net.publish(0, 1)
    net.publish(0, 4)  # 2 and 3 never sent
    net.publish(0, 5000)  # beyond the sequence window: the origin restarted, say
    assert [d.gap for d in net.delivered(1)] == [0, 2, GAP_UNKNOWN]
    stats = net.routers[nid(1)].topic_stats()[TOPIC]
    assert (stats.delivered, stats.gaps, stats.resyncs) == (3, 2, 1)


def test_sequence_numbers_count_per_topic() -> None:
    net = Net(2)
    net.connect_all()
    net.subscribe()
    net.subscribe("other")
    net.publish(0, 1)
    net.publish(0, 1, topic="other")
    net.publish(0, 2)
    assert [(d.message.topic, d.gap) for d in net.delivered(1)] == [
        (TOPIC, 0), ("other", 0), (TOPIC, 0)]


def test_validator_reject_is_not_delivered_nor_forwarded_and_penalises_ignore_is_quiet() -> None:
    net = Net(3)
    for a in range(2):
        net.connect(a, a + 1)
    net.subscribe()

    def validator(m):  # type: ignore[no-untyped-def]
        return {b"bad": Validation.REJECT, b"meh": Validation.IGNORE}.get(m.body,
                                                                         Validation.ACCEPT)

    net.handle(1, SetTopicPolicy(TOPIC, validator=validator))
    net.publish(0, 1, body=b"bad")
    net.publish(0, 2, body=b"meh")
    net.publish(0, 3, body=b"ok")
    assert [d.message.body for d in net.delivered(1)] == [b"ok"]
    assert [d.message.body for d in net.delivered(2)] == [b"ok"]
    assert [p.peer for p in net.penalties(1)] == [nid(0)]
    stats = net.routers[nid(1)].topic_stats()[TOPIC]
    assert (stats.invalid, stats.ignored, stats.delivered) == (1, 1, 1)


def test_publish_refuses_a_message_that_is_not_ours_or_reuses_a_number() -> None:
    net = Net(2)
    with pytest.raises(LocalProtocolError, match="must be ours"):
        net.handle(0, Publish(message(1, 1)))
    net.handle(0, Publish(message(0, 1)))
    with pytest.raises(LocalProtocolError, match="duplicate"):
        net.handle(0, Publish(message(0, 1, body=b"again")))


def test_mesh_is_everyone_while_few_and_kept_between_the_marks_when_many() -> None:
    n = 20
    net = Net(n)
    for i in range(1, n):
        net.connect(0, i)
    net.subscribe()
    net.advance(1.0)
    cfg = net.routers[nid(0)].config
    assert cfg.mesh_low <= len(net.routers[nid(0)].mesh(TOPIC)) <= cfg.mesh_high
    small = Net(5)
    small.connect_all()
    small.subscribe()
    small.advance(0.2)
    assert all(len(r.mesh(TOPIC)) == 4 for r in small.routers.values())


def test_many_subscribers_all_delivered_through_the_mesh_with_bounded_copies() -> None:
    n = 30
    net = Net(n)
    for i in range(n):  # a ring plus chords: every node has 4 links
        net.connect(i, (i + 1) % n)
        net.connect(i, (i + 7) % n)
    net.subscribe()
    net.advance(0.5)
    before = net.gossip_sent()
    net.publish(0, 1)
    net.advance(1.0)
    assert all(len(net.delivered(i)) == 1 for i in range(n))
    # Each node pushes to its mesh (here its 4 links) but the sender: at most 3 copies each.
    assert net.gossip_sent() - before <= 3 * n + 4


def test_received_from_an_unknown_peer_is_ignored() -> None:
    net = Net(1)
    net.subscribe()
    net.handle(0, Received(nid(5), message(5, 1)))
    assert net.delivered(0) == [] and net.routers[nid(0)].ignored == 1


def test_topic_stats_count_duplicates() -> None:
    net = Net(3)
    net.connect_all()
    net.subscribe()
    net.advance(0.2)
    m = net.publish(0, 1)
    net.handle(1, Received(nid(2), dataclasses.replace(m, hops=1)))
    assert net.routers[nid(1)].topic_stats()[TOPIC].duplicates == 1
    assert len(net.delivered(1)) == 1


def test_a_node_back_from_a_long_disconnection_fetches_the_whole_cache_a_slice_a_beat() -> None:
    net = Net(2, config(max_iwant_ids=100, max_ihave_ids=400))
    net.connect_all()
    net.subscribe()
    net.advance(0.1)
    net.down.add((0, 1))
    for seq in range(1, 301):
        net.publish(0, seq)
    assert net.delivered(1) == []
    net.down.clear()
    net.handle(0, __import__("bzzz_edge.gossip").gossip.PeerDisconnected(nid(1)))
    net.handle(1, __import__("bzzz_edge.gossip").gossip.PeerDisconnected(nid(0)))
    net.connect(0, 1)  # it reconnects: told about the cache, asks 50 IDs a heartbeat
    net.advance(10 * net.routers[nid(0)].config.heartbeat_interval)
    assert sorted(d.message.seq for d in net.delivered(1)) == list(range(1, 301))
    assert net.penalties(0) == [] and net.penalties(1) == []


def test_many_subscriptions_are_split_across_control_messages_and_all_understood() -> None:
    net = Net(2, config(max_topics_per_peer=2000))
    net.connect_all()
    topics = [f"topic/{n}" for n in range(1200)]
    for topic in topics:
        net.subscribe(topic, nodes=[0])
    net.advance(net.routers[nid(0)].config.refresh_interval + 0.1)
    stats = net.routers[nid(1)].topic_stats()
    assert all(stats[t].subscribed_peers == 1 for t in topics)
    assert net.penalties(1) == []


def test_a_node_may_publish_to_a_topic_it_does_not_subscribe_to() -> None:
    net = Net(3)
    net.connect_all()
    net.subscribe(nodes=[1, 2])
    net.advance(0.1)
    m = net.publish(0, 1)
    assert net.delivered(0) == []
    assert [d.message for d in net.delivered(1)] == [m] == [d.message for d in net.delivered(2)]


def test_wall_clock_offset_moves_the_replay_window() -> None:
    from bzzz_edge.gossip import WallClock

    net = Net(2)
    net.connect_all()
    net.subscribe()
    net.handle(1, WallClock(-3600.0))  # node 1's wall clock is an hour behind
    net.publish(0, 1)
    assert net.delivered(1) == []
    assert net.routers[nid(1)].topic_stats()[TOPIC].stale == 1


def test_a_validator_that_raises_drops_the_message_and_charges_no_one() -> None:
    net = Net(2)
    net.connect_all()
    net.subscribe()

    def broken(m):  # type: ignore[no-untyped-def]
        raise ValueError("bug")

    net.handle(1, SetTopicPolicy(TOPIC, validator=broken))
    net.publish(0, 1)
    assert net.delivered(1) == [] and net.penalties(1) == []
    assert net.routers[nid(1)].topic_stats()[TOPIC].ignored == 1


def test_an_idle_router_sleeps_until_its_refresh_and_wakes_for_the_next_event() -> None:
    net = Net(4)
    net.connect_all()
    net.subscribe()
    cfg = net.routers[nid(0)].config
    net.advance(cfg.refresh_interval + cfg.heartbeat_interval)  # meshes made, first refresh
    heartbeat, refresh = cfg.heartbeat_interval, cfg.refresh_interval
    for r in net.routers.values():  # nothing to repair: the next wake-up is the refresh
        assert r.next_deadline() is not None and r.next_deadline() > net.now + heartbeat
        assert r.next_deadline() <= net.now + refresh
    net.publish(0, 1)
    # Every router heard of it (a delivery, or its own publication): heartbeats again, the
    # first within one interval, until it is announced.
    for r in net.routers.values():
        deadline = r.next_deadline()
        assert deadline is not None and deadline <= net.now + heartbeat
    net.advance((cfg.gossip_windows + 1) * heartbeat)
    for r in net.routers.values():
        assert r.next_deadline() is not None and r.next_deadline() > net.now + heartbeat
    assert all(len(net.delivered(i)) == 1 for i in range(4))
    # An IWANT waiting for its answer keeps the heartbeats going (its timeout is timed).
    r2, ghost = net.routers[nid(2)], message(1, 99).msg_id  # an ID nobody here holds
    net.handle(2, Received(nid(3), encode_control(Control(ihave=((TOPIC, (ghost,)),)))))
    assert not r2._lazy.idle()  # node 2 asked node 3 for it at once
    deadline = r2.next_deadline()
    assert deadline is not None and deadline <= net.now + heartbeat
    net.advance(cfg.iwant_timeout + 2 * heartbeat)  # the promise broken: nothing left to do
    deadline = r2.next_deadline()
    assert r2._lazy.idle() and deadline is not None and deadline > net.now + heartbeat
