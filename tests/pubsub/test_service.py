"""The pub/sub service over real loopback connections, nodes in one process."""

from __future__ import annotations

import dataclasses
import random
import secrets

import pytest
import trio
import trio.testing

from bzzz_edge.config import load_config
from bzzz_edge.gossip.bodies import MessageTooLarge, preferred_codec
from bzzz_edge.gossip.service import GossipService
from bzzz_edge.gossip.topics import COORDINATION, STANDARD_TOPICS, TopicError, issue_topic
from bzzz_edge.identity import Identity, network_id
from bzzz_edge.net import ConnectionManager, NetLimits, Source
from bzzz_edge.peering import gossip_config as _gossip_config

_CONFIG = load_config(environ={}, flags={"node.profile": "local"})


class _Node:
    def __init__(self, key: bytes, **settings: object) -> None:
        self.identity = Identity.generate()
        self.node_id = self.identity.node_id
        self.manager = ConnectionManager(self.identity, key, listen=("127.0.0.1", 0),
                                         limits=NetLimits())
        gossip = dataclasses.replace(_CONFIG.settings.gossip, **settings)
        self.gossip = GossipService(self.manager, self.identity, network_id(key),
                                    settings=gossip, router=_gossip_config(_CONFIG),
                                    rng=random.Random(1))


async def _until(condition, timeout=10.0):
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def _cluster(nursery, count: int, **settings: object) -> list[_Node]:
    key = secrets.token_bytes(32)
    nodes = [_Node(key, **settings) for _ in range(count)]
    ports = [await nursery.start(node.manager.run) for node in nodes]
    for node in nodes:
        await nursery.start(node.gossip.run)
    for i, node in enumerate(nodes):
        for port in ports[:i]:
            node.manager.want(("127.0.0.1", port), Source.BOOTSTRAP)
    await _until(lambda: all(len(n.manager.connections) == count - 1 for n in nodes))
    return nodes


def _subscribed_peers(node: _Node, topic: str) -> int:
    stats = node.gossip.router.topic_stats().get(topic)
    return 0 if stats is None else stats.subscribed_peers


def _knows_neighbours(node: _Node, count: int) -> bool:
    """Whether ``node`` has every peer's neighbour list, each of ``count`` nodes."""
    peers = node.gossip.router._peers  # the router's view of each peer (no public accessor)
    return all(len(state.neighbours or ()) == count for state in peers.values())


def test_publish_reaches_own_and_remote_subscribers_with_every_field():
    async def main():
        async with trio.open_nursery() as nursery:
            a, b, c = await _cluster(nursery, 3)
            assert set(a.gossip.joined()) == set(STANDARD_TOPICS)
            await _until(lambda: all(_subscribed_peers(n, COORDINATION) == 2 for n in (a, b, c)))
            # ... and each knows its peers' neighbours: else c, not knowing b is a's, passes a's
            # message on to b, and that copy (2 hops) may reach b before a's own.
            await _until(lambda: all(_knows_neighbours(n, 2) for n in (a, b, c)))
            mine, theirs = a.gossip.subscribe(COORDINATION), b.gossip.subscribe(COORDINATION)
            published = a.gossip.publish(COORDINATION, b"claim task-42")
            with trio.fail_after(5):
                own, remote = await mine.receive(), await theirs.receive()
            for delivery in (own, remote):
                assert (delivery.topic, delivery.origin, delivery.seq, delivery.data) == \
                    (COORDINATION, a.node_id, published.seq, b"claim task-42")
                assert delivery.timestamp_ms > 1_700_000_000_000 and delivery.gap == 0
            assert (own.hops, remote.hops) == (0, 1)
            second = a.gossip.publish(COORDINATION, b"")
            assert second.seq == published.seq + 1  # per topic, consecutive
            with trio.fail_after(5):
                assert (await theirs.receive()).data == b""
            rows = {row["topic"]: row for row in b.gossip.topic_stats()}
            assert rows[COORDINATION]["delivered"] == 2 and rows[COORDINATION]["subscribers"] == 1
            assert rows[COORDINATION]["joined"] and rows[COORDINATION]["standard"]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_subscription_for_others_only_is_not_given_this_nodes_own_messages():
    async def main():
        async with trio.open_nursery() as nursery:
            a, b = await _cluster(nursery, 2)
            await _until(lambda: all(_subscribed_peers(n, COORDINATION) == 1 for n in (a, b)))
            others, everything = (a.gossip.subscribe(COORDINATION, others_only=True),
                                  a.gossip.subscribe(COORDINATION))
            a.gossip.publish(COORDINATION, b"mine")
            a.gossip.deliver_here(COORDINATION, a.node_id, 7, 1, b"mine, derived")
            a.gossip.deliver_here(COORDINATION, b.node_id, 8, 1, b"b's, derived")
            b.gossip.publish(COORDINATION, b"b's")
            with trio.fail_after(5):
                got = [(await others.receive()).data for _ in range(2)]
                seen = [(await everything.receive()).data for _ in range(4)]
            assert sorted(got) == [b"b's", b"b's, derived"]
            assert sorted(seen) == [b"b's", b"b's, derived", b"mine", b"mine, derived"]
            assert len(others) == 0 and others.received == 2
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_bad_topic_and_too_large_message_are_refused_at_publish():
    async def main():
        async with trio.open_nursery() as nursery:
            (a,) = await _cluster(nursery, 1, max_message_size=1000)
            with pytest.raises(MessageTooLarge, match="1001 bytes exceeds the maximum of 1000"):
                a.gossip.publish(COORDINATION, b"x" * 1001)
            with pytest.raises(TopicError, match="not allowed"):
                a.gossip.publish("bad topic", b"x")
            with pytest.raises(TopicError, match="empty"):
                a.gossip.subscribe("")
            a.gossip.publish(COORDINATION, b"x" * 1000)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_dynamic_topic_joined_by_subscribing_left_on_close_reaches_only_subscribers():
    async def main():
        topic = issue_topic(7)
        async with trio.open_nursery() as nursery:
            a, b, c = await _cluster(nursery, 3)
            sub = b.gossip.subscribe(topic)
            assert topic in b.gossip.joined() and topic not in c.gossip.joined()
            await _until(lambda: _subscribed_peers(a, topic) == 1)
            a.gossip.publish(topic, b"who takes issue 7?")
            with trio.fail_after(5):
                assert (await sub.receive()).data == b"who takes issue 7?"
            stats = c.gossip.router.topic_stats().get(topic)
            assert stats is None or stats.delivered == stats.duplicates == 0
            sub.close()
            assert topic not in b.gossip.joined()
            await _until(lambda: _subscribed_peers(a, topic) == 0)
            b.gossip.join(topic)  # held without a subscriber
            await _until(lambda: _subscribed_peers(a, topic) == 1)
            b.gossip.leave(topic)
            assert topic not in b.gossip.joined()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_slow_subscriber_loses_oldest_counted_memory_bounded():
    async def main():
        async with trio.open_nursery() as nursery:
            a, b = await _cluster(nursery, 2)
            await _until(lambda: _subscribed_peers(a, COORDINATION) == 1)
            slow = b.gossip.subscribe(COORDINATION, buffer=4)
            fast = b.gossip.subscribe(COORDINATION, buffer=1000)
            for n in range(50):
                a.gossip.publish(COORDINATION, b"%d" % n)
            with trio.fail_after(5):
                for _ in range(50):
                    await fast.receive()
            assert len(slow) == 4 and slow.dropped == 46
            first = slow.receive_nowait()
            assert (first.data, first.missed) == (b"46", 46)
            row = {r["topic"]: r for r in b.gossip.topic_stats()}[COORDINATION]
            assert row["subscriber_drops"] == 46
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_large_bodies_travel_compressed_and_arrive_whole():
    async def main():
        async with trio.open_nursery() as nursery:
            a, b = await _cluster(nursery, 2)
            await _until(lambda: _subscribed_peers(a, COORDINATION) == 1)
            sub = b.gossip.subscribe(COORDINATION)
            text = b"task 42 claimed by alpha, context attached; " * 500
            a.gossip.publish(COORDINATION, text)
            with trio.fail_after(5):
                assert (await sub.receive()).data == text
            codec = preferred_codec()
            sent = a.gossip.compression.encoded[codec]
            assert sent.blobs == 1 and sent.blob_bytes < len(text) // 5
            assert b.gossip.compression.decoded[codec].payload_bytes == len(text)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_topics_joined_are_capped():
    async def main():
        async with trio.open_nursery() as nursery:
            (a,) = await _cluster(nursery, 1, max_topics=5)
            a.gossip.join("x/1")
            a.gossip.subscribe("x/2")
            with pytest.raises(TopicError, match=r"gossip\.max_topics"):
                a.gossip.join("x/3")
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_router_keys_override_the_profile_and_bad_ones_name_the_key():
    from bzzz_edge.errors import ConfigError

    config = load_config(environ={}, flags={"node.profile": "local",
                                            "gossip.mesh_degree": "8"})
    router = _gossip_config(config)
    assert router.mesh_degree == 8 and router.heartbeat_interval == 0.05  # local's
    assert router.peer_message_rate == config["gossip.max_rate"]
    assert _gossip_config(load_config(environ={}, flags={})).heartbeat_interval == 0.2
    bad = load_config(environ={}, flags={"gossip.mesh_degree": "2", "gossip.mesh_low": "4"})
    with pytest.raises(ConfigError, match=r"^gossip\.mesh_degree: must lie between") as exc:
        _gossip_config(bad)
    assert exc.value.key == "gossip.mesh_degree"
