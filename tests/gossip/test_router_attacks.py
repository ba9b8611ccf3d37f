"""The issue's attacks at core level: a peer holding the network key that forges, alters,
replays (also after flooding the dedup cache), or floods IHAVE/IWANT is limited, then banned."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.gossip import (
    Ban,
    Control,
    Offence,
    PeerConnected,
    Received,
    encode_control,
)
from bzzz_edge.wire.envelope import DirectMessage, GossipMessage, sign_gossip
from bzzz_edge.wire.types import PUBSUB_CONTROL

from .conftest import NET, TOPIC, WALL, Net, config, key, message, nid

EVIL = 9  # the attacker: a peer outside the Net, whose sends we read from ``net.sent``


def _victim(n: int = 2, **cfg: object) -> Net:
    net = Net(n, config(**cfg))
    for a in range(n - 1):
        net.connect(a, a + 1)
    net.subscribe()
    net.handle(0, PeerConnected(nid(EVIL)))
    net.advance(0.1)
    return net


def _from_evil(net: Net, envelope: GossipMessage | DirectMessage, to: int = 0) -> None:
    net.handle(to, Received(nid(EVIL), envelope))


def _to_evil(net: Net) -> list[object]:
    return [env for _, j, env in net.sent if j == -1]


def test_altered_relayed_message_is_neither_delivered_nor_forwarded_and_gets_banned() -> None:
    net = _victim(2)
    real = message(3, 1)
    for n in range(10):
        _from_evil(net, dataclasses.replace(real, body=b"evil %d" % n))
    assert net.delivered(0) == [] and net.delivered(1) == []
    assert {p.offence for p in net.penalties(0)} == {Offence.BAD_SIGNATURE}
    assert [b.peer for b in net.bans(0)] == [nid(EVIL)]
    assert nid(EVIL) not in net.routers[nid(0)].peers()
    # The forgeries did not poison the real message's ID.
    net.handle(0, Received(nid(1), real))
    assert [d.message.body for d in net.delivered(0)] == [b"hello"]


def test_a_node_without_the_network_key_cannot_get_anything_delivered() -> None:
    net = _victim(2)
    outsider = sign_gossip(key(4), network_id=b"another network", seq=1,
                           timestamp_ms=int(WALL * 1000), topic=TOPIC, body=b"x")
    _from_evil(net, outsider)
    assert net.delivered(0) == []
    assert net.routers[nid(0)].topic_stats()[TOPIC].invalid == 1


def test_origin_own_connection_skips_the_check_but_a_bad_signature_is_never_passed_on() -> None:
    net = _victim(2)
    own = sign_gossip(key(EVIL), network_id=NET, seq=1, timestamp_ms=int(WALL * 1000),
                      topic=TOPIC, body=b"mine")
    _from_evil(net, own)  # sender == origin: delivered without a second signature check
    assert [d.hops for d in net.delivered(0)] == [1]
    assert [d.message.body for d in net.delivered(1)] == [b"mine"]  # verified, then relayed
    bad = dataclasses.replace(own, seq=2, body=b"altered")
    _from_evil(net, bad)  # delivered on the channel's word, but verified before relaying
    assert len(net.delivered(0)) == 2 and len(net.delivered(1)) == 1
    assert [p.offence for p in net.penalties(0)] == [Offence.BAD_SIGNATURE]


def test_replay_is_refused_after_flooding_the_dedup_cache_and_below_the_window() -> None:
    net = _victim(2, dedup_entries=16)
    first = message(3, 1)
    net.handle(0, Received(nid(1), first))
    for seq in range(2, 100):  # evicts ``first`` from the 16-entry dedup cache
        net.handle(0, Received(nid(1), message(3, seq)))
    assert len(net.delivered(0)) == 99
    _from_evil(net, first)
    for seq in range(100, 1200):  # pushes seq 1 below the 1024-number window
        net.handle(0, Received(nid(1), message(3, seq, body=b"")))
    _from_evil(net, first)
    assert len(net.delivered(0)) == 1199
    assert net.routers[nid(0)].topic_stats()[TOPIC].stale == 2


def test_ihave_flood_is_limited_then_banned() -> None:
    net = _victim(2)
    limit = net.routers[nid(0)].config.max_ihave_ids
    ids = tuple(bytes([n % 256, n // 256]) * 8 for n in range(limit))
    beats = 0
    for beats in range(1, 41):  # noqa: B007 (read after the loop)
        flood = Control(ihave=((TOPIC, ids[:limit // 2]), (TOPIC, ids[limit // 2:])))
        _from_evil(net, encode_control(flood))
        _from_evil(net, encode_control(Control(ihave=((TOPIC, ids[:10]),))))  # over the limit
        if net.bans(0):
            break
        net.advance(net.routers[nid(0)].config.heartbeat_interval)
    assert [b.offence for b in net.bans(0)] == [Offence.IHAVE_FLOOD]
    wanted = sum(len(env.body) for env in _to_evil(net) if isinstance(env, DirectMessage))
    assert wanted > 0  # it was answered while within its limit...
    assert len(net.penalties(0)) <= beats  # ...and charged once per heartbeat past it


def test_iwant_flood_gets_each_message_at_most_max_retransmissions_times_then_a_ban() -> None:
    net = _victim(2)
    m = net.publish(1, 1)
    assert len(net.delivered(0)) == 1
    cfg = net.routers[nid(0)].config
    for _ in range(200):
        _from_evil(net, encode_control(Control(iwant=(m.msg_id,))))
        net.advance(cfg.heartbeat_interval)
        if net.bans(0):
            break
    copies = [env for env in _to_evil(net) if isinstance(env, GossipMessage)]
    assert len(copies) <= cfg.max_retransmissions + 1  # the eager push, then the re-sends
    assert [b.offence for b in net.bans(0)] == [Offence.IWANT_FLOOD]


def test_message_flood_past_the_budget_is_dropped_unchecked_and_charged() -> None:
    net = _victim(2, peer_message_rate=10.0)
    for seq in range(1, 60):
        _from_evil(net, message(3, seq))
    assert len(net.delivered(0)) == 20  # the burst (2 x rate), then nothing
    assert Offence.FLOOD in {p.offence for p in net.penalties(0)}


def test_malformed_control_is_charged_and_never_raises() -> None:
    net = _victim(2)
    _from_evil(net, DirectMessage(PUBSUB_CONTROL.name, PUBSUB_CONTROL.version, b"\xc1garbage"))
    assert [p.offence for p in net.penalties(0)] == [Offence.MALFORMED]


def test_subscribing_to_too_many_topics_is_capped() -> None:
    net = _victim(2, max_topics_per_peer=4)
    subs = tuple((f"t{n}", True) for n in range(10))
    _from_evil(net, encode_control(Control(subscriptions=subs)))
    assert net.routers[nid(0)].ignored_subscriptions == 6
    stats = net.routers[nid(0)].topic_stats()
    assert sum(1 for t in stats if t.startswith("t")) == 4


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200))
def test_random_control_bodies_never_raise(body: bytes) -> None:
    net = _victim(2)
    _from_evil(net, DirectMessage(PUBSUB_CONTROL.name, PUBSUB_CONTROL.version, body))
    net.advance(0.2)
    assert not any(isinstance(a, Ban) and a.peer != nid(EVIL) for a in net.actions[0])
