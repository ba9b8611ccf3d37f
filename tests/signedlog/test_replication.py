"""The log service and replication in one trio run: real connection managers on 127.0.0.1, real
LMDB stores, a tampered log refused, a fork found and kept as evidence."""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import BzzzError
from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits, Source
from bzzz_edge.signedlog import BadEntry
from bzzz_edge.signedlog.replication import Replicator
from bzzz_edge.signedlog.service import LogService
from bzzz_edge.signedlog.storage import DATABASES, verify_stored
from bzzz_edge.store import Store

LIMITS = NetLimits(keepalive_interval=0.5, handshake_timeout=2.0, backoff_initial=0.05,
                   backoff_max=0.5)


class Peer:
    def __init__(self, path, identity: Identity, key: bytes) -> None:
        self.store = Store(path, map_size=8 * 2**20, databases=DATABASES)
        self.manager = ConnectionManager(identity, key, listen=("127.0.0.1", 0), limits=LIMITS,
                                         hello={"name": "t"})
        self.log = LogService(self.store, identity)
        self.replicator = Replicator(self.log, self.manager, notify_gap=0.2)
        self.node_id = identity.node_id


@asynccontextmanager
async def running(*peers: Peer):
    async with trio.open_nursery() as nursery:
        for peer in peers:
            await nursery.start(peer.manager.run)
            await nursery.start(peer.log.run)
            await nursery.start(peer.replicator.run)
        yield
        nursery.cancel_scope.cancel()
    for peer in peers:
        peer.store.close()


def _pair(tmp_path) -> tuple[Peer, Peer]:
    """Two nodes of one network, A and B, not connected yet."""
    key = secrets.token_bytes(32)
    return (Peer(tmp_path / "a", Identity.generate(), key),
            Peer(tmp_path / "b", Identity.generate(), key))


def _held(peer: Peer, author: bytes) -> int:
    with peer.log.reader() as reader:
        head = reader.head(author)
    return 0 if head is None else head.length


async def _until(condition, events, timeout: float = 10.0, *, who: Peer | None = None) -> None:
    """Wait until ``condition()`` holds, checking after each replication round."""
    with trio.move_on_after(timeout):
        while not condition():
            await events().wait()
        return
    raise AssertionError("timed out" + (f"; replicator: {who.replicator.counters}, transport "
                                        f"{dict(who.manager.figures())}" if who else ""))


def test_appends_are_batched_durable_and_verify(tmp_path):
    async def main():
        peer = Peer(tmp_path / "a", Identity.generate(), secrets.token_bytes(32))
        async with running(peer):
            entries = []
            async with trio.open_nursery() as nursery:
                async def one(i: int) -> None:
                    entries.append(await peer.log.append("task_progress", {"i": i}))
                for i in range(50):
                    nursery.start_soon(one, i)
            assert sorted(e.index for e in entries) == list(range(50))
            assert peer.store.writer.stats.commits < 50  # group commit: fewer commits
            with pytest.raises(Exception, match="type"):
                await peer.log.append("Not A Type", {})
            assert (await peer.log.append("escalation", {})).index == 50
            with peer.log.reader() as reader:
                assert verify_stored(reader, peer.node_id).length == 51
    trio.run(main)


def test_a_peer_log_is_replicated_and_verifies_on_the_other_side(tmp_path):
    async def main():
        a, b = _pair(tmp_path)
        async with running(a, b):
            for i in range(300):  # more than one request's worth
                a.log.record("task_announced", {"task": i})
            await _until(lambda: a.log.length == 300, lambda: a.log.appended)
            b.manager.want(("127.0.0.1", a.manager.port), Source.JOIN)
            await _until(lambda: _held(b, a.node_id) == 300, lambda: b.replicator.rounds_done,
                         who=b)
            await a.log.append("task_completed", {"task": 1})  # told with log.notify
            await _until(lambda: _held(b, a.node_id) == 301, lambda: b.replicator.rounds_done,
                         who=b)
            with b.log.reader() as reader:
                assert verify_stored(reader, a.node_id).length == 301
            assert b.replicator.counters["rounds_refused"] == 0
    trio.run(main)


def test_checking_a_peers_batch_gives_way_to_other_work_and_ends_on_a_busy_node(
        tmp_path, monkeypatch):
    """B checks A's 300 entries in chunks, letting its other tasks run between them (a
    ticker never goes a whole batch without running), and finishes although B is never
    idle (a task always runnable)."""
    import bzzz_edge.signedlog.replication as replication

    checked: list[int] = []  # entries checked when the ticker ran
    real = replication.LogChain.check_next

    def counting(self, encoded, **kw):
        checked.append(0)
        return real(self, encoded, **kw)

    monkeypatch.setattr(replication.LogChain, "check_next", counting)

    async def main():
        a, b = _pair(tmp_path)
        async with running(a, b):
            for i in range(300):
                a.log.record("task_announced", {"task": i})
            await _until(lambda: a.log.length == 300, lambda: a.log.appended)
            gaps: list[int] = []

            async def ticker():
                seen = 0
                while True:  # never blocked: B is never idle
                    gaps.append(len(checked) - seen)
                    seen = len(checked)
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                b.manager.want(("127.0.0.1", a.manager.port), Source.JOIN)
                await _until(lambda: _held(b, a.node_id) == 300,
                             lambda: b.replicator.rounds_done, who=b)
                nursery.cancel_scope.cancel()
            # A turn between chunks: trio runs each ready task once per pass, in either
            # order, so the ticker sees at most two chunks checked between its turns.
            assert len(checked) >= 300 and max(gaps) <= 2 * replication.CHECK_CHUNK
            with b.log.reader() as reader:
                assert verify_stored(reader, a.node_id).length == 300
    trio.run(main)


def test_a_tampered_log_is_refused_and_nothing_of_it_stored(tmp_path):
    async def main():
        a, b = _pair(tmp_path)
        async with running(a, b):
            for i in range(10):
                await a.log.append("task_announced", {"task": i})
            # A's entry 6 changes on A's disk (or A lies): its signature no longer holds.
            entry_key = a.node_id + (6).to_bytes(8, "big")

            def tamper(txn):
                raw = bytearray(txn.get(entry_key, db=a.log.dbs.entries))
                raw[20] ^= 0x04
                txn.put(entry_key, bytes(raw), db=a.log.dbs.entries)

            await a.store.writer.write(tamper)
            b.manager.want(("127.0.0.1", a.manager.port), Source.JOIN)
            await _until(lambda: b.replicator.counters["rounds_refused"] >= 1,
                         lambda: b.replicator.rounds_done, who=b)
            assert _held(b, a.node_id) == 0  # not even the six good entries before it
            assert b.manager.guard.strikes(a.node_id, trio.current_time()) >= 1
    trio.run(main)


def test_a_rewritten_history_is_a_fork_kept_as_evidence(tmp_path):
    async def main():
        key = secrets.token_bytes(32)
        liar = Identity.generate()
        a = Peer(tmp_path / "a", liar, key)
        b = Peer(tmp_path / "b", Identity.generate(), key)
        async with running(a, b):
            for i in range(3):
                await a.log.append("task_announced", {"task": i})
            (tmp_path / "backup").mkdir(mode=0o700)
            a.store.env.copy(str(tmp_path / "backup"))  # three entries
            for i in range(3, 9):
                await a.log.append("task_announced", {"task": i})
            b.manager.want(("127.0.0.1", a.manager.port), Source.JOIN)
            await _until(lambda: _held(b, a.node_id) == 9, lambda: b.replicator.rounds_done,
                         who=b)
        # The same node comes back from the backup and writes another history.
        b = Peer(tmp_path / "b", b.manager.identity, key)
        a2 = Peer(tmp_path / "backup", liar, key)
        async with running(a2, b):
            for i in range(8):
                await a2.log.append("task_failed", {"task": i})
            b.manager.want(("127.0.0.1", a2.manager.port), Source.JOIN)
            await _until(lambda: b.replicator.counters["forks"] >= 1,
                         lambda: b.replicator.rounds_done, who=b)
            with b.log.reader() as reader:
                forks = reader.forks(liar.node_id)
                assert [(f.index, f.kind) for f in forks] == [(3, "entry")]
                with pytest.raises(BadEntry, match="FORK") as caught:
                    verify_stored(reader, liar.node_id)
                assert caught.value.index == 3
            assert _held(b, liar.node_id) == 9  # nothing more replicated into a corrupt log
    trio.run(main)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=64),
    st.dictionaries(st.sampled_from(["length", "start", "limit", "x"]),
                    st.one_of(st.integers(-2**63, 2**64 - 1), st.none(), st.booleans(),
                              st.text(max_size=4),
                              st.floats()), max_size=3).map(msgpack.packb)))
def test_log_rpc_handlers_answer_garbage_with_an_error_never_a_crash(tmp_path_factory, body):
    path = tmp_path_factory.mktemp("rpc")

    async def main():
        peer = Peer(path / "a", Identity.generate(), secrets.token_bytes(32))
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.log.run)
            await peer.log.append("escalation", {"why": "test"})
            for handler in (peer.log.rpc_head, peer.log.rpc_entries):
                try:
                    answer = await handler(b"\x01" * 32, body)
                except BzzzError:
                    continue
                assert isinstance(answer, bytes)
            nursery.cancel_scope.cancel()
        peer.store.close()

    trio.run(main)
