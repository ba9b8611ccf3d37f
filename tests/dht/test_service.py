"""The DHT service in one trio run: real connection managers on 127.0.0.1 (Noise, RPC), real
LMDB stores, no membership (contacts are given with ``discover``)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import trio

from bzzz_edge.config import load_config
from bzzz_edge.dht import DhtConfig, Kind, Stored, Verdict, decode_message, encode_message
from bzzz_edge.dht import Store as StoreMessage
from bzzz_edge.dht.service import RPC_METHOD, DhtService
from bzzz_edge.dht.storage import DATABASES
from bzzz_edge.feed import Feed
from bzzz_edge.identity import Identity, generate_network_key, network_id
from bzzz_edge.net import ConnectionManager, NetLimits, RequestFailed, Source
from bzzz_edge.store import Store

NETWORK_KEY = generate_network_key()


class _NoMembership:
    core = None

    def __init__(self) -> None:
        self.changes: Any = Feed("none")


class _Peer:
    def __init__(self, path: Path, config: DhtConfig, identity: Identity | None = None,
                 max_value_bytes: int = 16384) -> None:
        self.identity = identity or Identity.generate()
        settings = load_config(environ={}, flags={}).settings
        self.manager = ConnectionManager(self.identity, NETWORK_KEY,
                                         listen=("127.0.0.1", 0),
                                         limits=NetLimits.from_settings(settings.network))
        self.store = Store(path, map_size=16 * 2**20, databases=DATABASES)
        self.dht = DhtService(self.manager, _NoMembership(), self.store, self.identity,
                              network_id=network_id(NETWORK_KEY), config=config,
                              max_value_bytes=max_value_bytes)
        self.port = 0


@asynccontextmanager
async def _network(tmp_path: Path, n: int, config: DhtConfig | None = None,
                   **kwargs: Any) -> AsyncIterator[list[_Peer]]:
    config = config or DhtConfig(k=3, rpc_timeout=2.0)
    peers = [_Peer(tmp_path / f"n{i}", config, **kwargs) for i in range(n)]
    async with trio.open_nursery() as nursery:
        for peer in peers:
            peer.port = await nursery.start(peer.manager.run)
        for i, peer in enumerate(peers):
            for other in peers[:i]:
                peer.manager.want(("127.0.0.1", other.port), Source.BOOTSTRAP)
        with trio.fail_after(30):
            while any(len(p.manager.connections) < n - 1 for p in peers):
                await trio.sleep(0.01)
        for peer in peers:
            await nursery.start(peer.dht.run)
            for other in peers:
                if other is not peer:
                    peer.dht.discover(other.identity.node_id, "127.0.0.1", other.port)
        yield peers
        nursery.cancel_scope.cancel()
    for peer in peers:
        peer.store.close()


def test_a_record_put_on_one_node_is_got_on_every_other(tmp_path: Path) -> None:
    async def main() -> None:
        async with _network(tmp_path, 6) as peers:
            key = b"\x11" * 32
            record = peers[0].dht.sign(Kind.VALUE, key, value=b"hello")
            done = await peers[0].dht.put(record)
            assert done.stored == 3  # k = 3 nodes took it
            for peer in peers[1:]:
                got = await peer.dht.get(key)
                assert [r.value for r in got.records] == [b"hello"]
            newer = peers[0].dht.sign(Kind.VALUE, key, value=b"hello again")
            assert newer.version > record.version
            await peers[0].dht.put(newer)
            got = await peers[5].dht.get(key)
            assert [r.value for r in got.records] == [b"hello again"]
            status = peers[5].dht.status()  # both gets timed, in order
            assert status["counters"]["gets"] == len(status["recent_get_ms"]) == 2
            assert all(ms > 0 for ms in status["recent_get_ms"])

    trio.run(main)


def test_records_held_survive_a_restart(tmp_path: Path) -> None:
    identities = [Identity.generate() for _ in range(3)]

    async def first() -> None:
        async with _network(tmp_path, 3) as peers:
            record = peers[0].dht.sign(Kind.PROVIDER, b"\x22" * 32)
            assert (await peers[0].dht.put(record)).stored == 3
            for peer in peers:  # the group-commit writer has the rows on disk
                assert await peer.dht.rows.flush()
            identities[:] = [p.identity for p in peers]

    async def second() -> None:
        peer = _Peer(tmp_path / "n1", DhtConfig(k=3), identity=identities[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.manager.run)
            await nursery.start(peer.dht.run)
            assert peer.dht.core is not None
            held = peer.dht.core.store.get(Kind.PROVIDER, b"\x22" * 32)
            assert [r.publisher for r in held] == [identities[0].node_id]
            nursery.cancel_scope.cancel()
        peer.store.close()

    trio.run(first)
    trio.run(second)


def test_a_store_with_a_value_over_the_limit_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        async with _network(tmp_path, 2, max_value_bytes=100) as peers:
            record = peers[0].dht.sign(Kind.VALUE, b"\x33" * 32, value=b"x" * 101)
            body = msgpack.packb(encode_message(StoreMessage(5, record)), use_bin_type=True)
            answer = await peers[0].manager.request(peers[1].identity.node_id, RPC_METHOD,
                                                    body)
            reply = decode_message(msgpack.unpackb(answer, raw=False))
            assert reply == Stored(5, Verdict.INVALID)
            assert peers[1].dht.core is not None and not len(peers[1].dht.core.store)

    trio.run(main)


def test_garbage_and_replies_sent_as_requests_are_error_answers(tmp_path: Path) -> None:
    async def main() -> None:
        async with _network(tmp_path, 2) as peers:
            target = peers[1].identity.node_id
            for body in (b"\xc1", msgpack.packb([9, 1, 2]),
                         msgpack.packb(encode_message(Stored(1, Verdict.STORED)))):
                try:
                    await peers[0].manager.request(target, RPC_METHOD, body)
                except RequestFailed as exc:
                    assert "DHT request" in str(exc)
                else:
                    raise AssertionError("an error answer was expected")
            got = await peers[0].dht.get(b"\x44" * 32)  # the node still serves
            assert got.records == () and got.result.answered == 1

    trio.run(main)


def test_a_get_whose_nearest_node_is_silent_ends_by_the_hedge_and_abandons_that_rpc(
        tmp_path: Path) -> None:
    config = DhtConfig(k=3, rpc_timeout=2.0, hedge_delay=0.05)

    async def main() -> None:
        async with _network(tmp_path, 4, config) as peers:
            key = b"\x55" * 32
            assert (await peers[0].dht.put(peers[0].dht.sign(Kind.VALUE, key, value=b"v"))
                    ).stored == 3
            asker = next(p for p in peers
                         if p.dht.core is not None and not p.dht.core.store.get(Kind.VALUE, key))
            assert asker.dht.core is not None
            (nearest,) = asker.dht.core.table.closest(key, 1)
            silent = next(p for p in peers if p.identity.node_id == nearest.node)
            release = trio.Event()
            asked = trio.Event()

            async def never_answers(peer: bytes, body: bytes) -> bytes:
                asked.set()
                await release.wait()
                raise RequestFailed("released")

            methods = silent.manager.handlers.methods  # its DHT requests now go unanswered
            methods[RPC_METHOD] = dataclasses.replace(methods[RPC_METHOD], handler=never_answers,
                                                      inline=False)
            got = await asker.dht.get(key)
            # Found through the hedge's RPCs while the first was unanswered: the get did not
            # wait for it, and that RPC was forgotten, not counted against the silent node.
            assert asked.is_set() and not release.is_set()
            assert [r.value for r in got.records] == [b"v"] and got.result.queried > 1
            assert asker.dht.core.pending_rpcs == 0
            assert asker.dht.counters["rpc_failed"] == 0
            assert asker.dht.core.counters["rpc_timeouts"] == 0
            release.set()

    trio.run(main)
