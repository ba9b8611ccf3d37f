"""Signed gossip between two in-process nodes over loopback: what is delivered, what dropped."""

from __future__ import annotations

import dataclasses
import secrets
import time

import trio
import trio.testing

from bzzz_edge.config import load_config
from bzzz_edge.gossip.service import GossipService
from bzzz_edge.identity import Identity, network_id
from bzzz_edge.net import ConnectionManager, NetLimits, Source
from bzzz_edge.wire.envelope import encode_envelope, sign_gossip

TOPIC = "bzzz/coordination/v1"


class _Node:
    def __init__(self, key: bytes) -> None:
        self.identity = Identity.generate()
        self.node_id = self.identity.node_id
        self.manager = ConnectionManager(self.identity, key, listen=("127.0.0.1", 0),
                                         limits=NetLimits())
        self.gossip = GossipService(self.manager, self.identity, network_id(key),
                                    settings=load_config(environ={}, flags={}).settings.gossip,
                                    replay_window=60)


async def _receive(channel, timeout=5.0):
    with trio.fail_after(timeout):
        return await channel.receive()


async def _until(condition, timeout=5.0):
    with trio.fail_after(timeout):
        while not condition():
            await trio.testing.wait_all_tasks_blocked(0.01)


def test_gossip_delivered_once_and_bad_messages_dropped_counted_and_banned():
    async def main():
        key = secrets.token_bytes(32)
        a, b = _Node(key), _Node(key)
        inbox = b.gossip.subscribe(TOPIC)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.manager.run)
            await nursery.start(b.manager.run)
            b.manager.want(("127.0.0.1", port), Source.BOOTSTRAP)
            await _until(lambda: a.node_id in b.manager.connections
                         and b.node_id in a.manager.connections)
            sent = a.gossip.publish(TOPIC, b"claim task-42")
            got = await _receive(inbox)
            assert got == sent and got.body == b"claim task-42"

            conn = a.manager.connections[b.node_id]
            await conn.send(encode_envelope(sent))  # replay
            await conn.send(encode_envelope(dataclasses.replace(sent, seq=sent.seq + 100)))
            stale = sign_gossip(a.identity.private_key, network_id=network_id(key), seq=1,
                                timestamp_ms=int((time.time() - 3600) * 1000), topic=TOPIC)
            await conn.send(encode_envelope(stale))
            marker = a.gossip.publish(TOPIC, b"marker")
            assert await _receive(inbox) == marker  # frames arrive in order: the rest is done
            counters = b.gossip.counters()
            assert counters["gossip_duplicate"] == 1
            assert counters["gossip_bad-signature"] == 1
            assert counters["gossip_stale"] == 1
            assert b.manager.guard.strikes(a.node_id, trio.current_time()) == 2

            # A peer that keeps forging is disconnected and refused for a while.
            for n in range(8):
                forged = dataclasses.replace(sent, seq=sent.seq + 1000 + n)
                await conn.send(encode_envelope(forged))
            await _until(lambda: a.node_id not in b.manager.connections)
            assert b.manager.figures()["bans"] == 1
            assert b.manager.guard.refused(a.node_id, "127.0.0.1", trio.current_time())
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_replay_is_refused_even_after_the_dedup_cache_forgot_the_message():
    """A flood larger than the dedup cache evicts IDs; the sequence window still refuses."""

    async def main():
        key = secrets.token_bytes(32)
        a, b = _Node(key), _Node(key)
        b.gossip.receipt = type(b.gossip.receipt)(network_id(key), replay_window=60,
                                                  max_entries=16)
        inbox = b.gossip.subscribe(TOPIC, buffer=1024)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.manager.run)
            await nursery.start(b.manager.run)
            b.manager.want(("127.0.0.1", port), Source.BOOTSTRAP)
            await _until(lambda: a.node_id in b.manager.connections)
            first = a.gossip.publish(TOPIC, b"first")
            for n in range(64):  # evicts ``first`` from the 16-entry cache
                a.gossip.publish(TOPIC, b"%d" % n)
            for _ in range(65):
                await _receive(inbox)
            await a.manager.connections[b.node_id].send(encode_envelope(first))
            marker = a.gossip.publish(TOPIC, b"marker")
            assert await _receive(inbox) == marker
            assert b.gossip.counters()["gossip_replay"] == 1
            nursery.cancel_scope.cancel()

    trio.run(main)
