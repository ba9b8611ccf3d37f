"""Signed gossip between two in-process meshes over loopback: what is delivered, what dropped."""

from __future__ import annotations

import dataclasses
import secrets
import time

import trio
import trio.testing

from bzzz_edge.config import load_config
from bzzz_edge.identity import Identity
from bzzz_edge.mesh import Mesh
from bzzz_edge.store import Store
from bzzz_edge.wire.envelope import encode_envelope, sign_gossip

TOPIC = "bzzz/coordination/v1"


def _mesh(tmp_path, name, key, bootstrap=()):
    config = load_config(environ={}, flags={
        "node.data_dir": str(tmp_path / name), "network.listen": "127.0.0.1:0",
        "network.mdns": "false", "node.name": name,
        "network.bootstrap_peers": ",".join(bootstrap)})
    store = Store(tmp_path / name / "store", map_size=2**24)
    return Mesh(config, Identity.generate(), key, store)


async def _receive(channel, timeout=5.0):
    with trio.fail_after(timeout):
        return await channel.receive()


def test_gossip_delivered_once_and_bad_messages_dropped_and_counted(tmp_path):
    async def main():
        key = secrets.token_bytes(32)
        a = _mesh(tmp_path, "a", key)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.run)
            b = _mesh(tmp_path, "b", key, [f"127.0.0.1:{port}"])
            inbox = b.subscribe(TOPIC)
            await nursery.start(b.run)
            with trio.fail_after(5):
                while not (a.node_id in b.manager.connections
                           and b.node_id in a.manager.connections):
                    await trio.testing.wait_all_tasks_blocked(0.01)
            sent = a.publish(TOPIC, b"claim task-42")
            got = await _receive(inbox)
            assert got == sent and got.body == b"claim task-42"

            conn = a.manager.connections[b.node_id]
            await conn.send(encode_envelope(sent))  # replay
            await conn.send(encode_envelope(dataclasses.replace(sent, seq=sent.seq + 100)))
            stale = sign_gossip(a.identity.private_key, network_id=a._network_id, seq=1,
                                timestamp_ms=int((time.time() - 3600) * 1000), topic=TOPIC)
            await conn.send(encode_envelope(stale))
            marker = a.publish(TOPIC, b"marker")
            assert await _receive(inbox) == marker  # frames arrive in order: the rest is done
            counters = b.manager.counters
            assert counters["gossip_duplicate"] == 1
            assert counters["gossip_bad-signature"] == 1
            assert counters["gossip_stale"] == 1

            # A peer that keeps forging is disconnected and refused for a while.
            for n in range(10):
                forged = dataclasses.replace(sent, seq=sent.seq + 1000 + n)
                await conn.send(encode_envelope(forged))
            with trio.fail_after(5):
                while a.node_id in b.manager.connections:
                    await trio.testing.wait_all_tasks_blocked(0.01)
            assert b.manager.counters["banned"] == 1
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_advertised_address_is_what_the_mesh_announces(tmp_path):
    async def main():
        config = load_config(environ={}, flags={
            "node.data_dir": str(tmp_path / "n"), "network.listen": "0.0.0.0:0",
            "network.mdns": "false", "network.advertise": "127.0.0.1"})
        mesh = Mesh(config, Identity.generate(), secrets.token_bytes(32),
                    Store(tmp_path / "n" / "store", map_size=2**24))
        async with trio.open_nursery() as nursery:
            port = await nursery.start(mesh.run)
            me = mesh.membership.member(mesh.node_id)
            assert (me.address.host, me.address.port) == ("127.0.0.1", port)
            nursery.cancel_scope.cancel()

    trio.run(main)
