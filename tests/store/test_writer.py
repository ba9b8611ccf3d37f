"""The group-commit writer: batches, durability of what it acknowledges, failures kept to their
own write, map growth and its ceiling, and writes from trio and from threads."""

from __future__ import annotations

import threading

import lmdb
import msgpack
import pytest
import trio

from bzzz_edge.errors import StorageError
from bzzz_edge.store import Store
from bzzz_edge.store._platform import CEILING_32BIT, CEILING_64BIT, map_ceiling


def _put(store: Store, key: bytes, value: bytes):
    db = store.db("data")
    return lambda txn: txn.put(key, value, db=db)


def test_concurrent_trio_writers_share_commits_and_all_land(tmp_path):
    store = Store(tmp_path / "s", map_size=2**22, databases=("data",))
    commits_before = store.writer.stats.commits

    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(64):
                nursery.start_soon(store.writer.write, _put(store, b"k%d" % i, b"v%d" % i))

    trio.run(main)
    with store.reading("data") as txn:
        assert {bytes(k): bytes(v) for k, v in txn.cursor()} == {
            b"k%d" % i: b"v%d" % i for i in range(64)}
    assert store.writer.stats.writes >= 64
    assert store.writer.stats.commits - commits_before < 64  # some commits carried several
    store.close()


def test_started_write_commits_before_its_result_is_awaited(tmp_path):
    """``start`` wakes the writer at once: the write commits while its caller goes on (a Raft
    leader syncs while it sends), and ``result`` then returns what ``fn`` returned."""
    store = Store(tmp_path / "s", map_size=2**22, databases=("data",))
    ran = threading.Event()

    def fn(txn):
        txn.put(b"k", msgpack.packb("v"), db=store.db("data"))
        ran.set()
        return 7

    async def main():
        pending = store.writer.start(fn)
        # No checkpoint in between: nothing but the writer thread can run the write.
        assert await trio.to_thread.run_sync(ran.wait, 10)
        assert await pending.result() == 7

    trio.run(main)
    assert store.get("data", b"k") == "v"
    store.close()


def test_a_cancelled_trio_writer_still_waits_for_its_write_to_be_durable(tmp_path):
    """Once queued, a write cannot be taken back: its caller, cancelled, is answered when the
    batch commits and sees the cancellation only at its next checkpoint."""
    import trio.testing

    store = Store(tmp_path / "s", map_size=2**22, databases=("data",))
    release = threading.Event()
    outcome: list[object] = []

    def slow(txn):
        release.wait(10)
        txn.put(b"k", msgpack.packb("v"), db=store.db("data"))
        return 7

    async def caller(scopes):
        with trio.CancelScope() as scope:
            scopes.append(scope)
            outcome.append(await store.writer.write(slow))
            await trio.lowlevel.checkpoint()
            outcome.append("not cancelled")

    async def main():
        scopes: list[trio.CancelScope] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller, scopes)
            await trio.testing.wait_all_tasks_blocked()
            scopes[0].cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []  # still waiting for its batch
            release.set()

    trio.run(main)
    assert outcome == [7]
    assert store.get("data", b"k") == "v"
    store.close()


def test_a_failing_write_fails_alone_and_its_batch_commits(tmp_path):
    store = Store(tmp_path / "s", map_size=2**22, databases=("data",))

    def broken(txn):
        txn.put(b"half", b"written", db=store.db("data"))
        raise ValueError("refused by its own rule")

    async def main():
        results = {}

        async def run(name, fn):
            try:
                results[name] = await store.writer.write(fn)
            except ValueError as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "a", _put(store, b"a", b"1"))
            nursery.start_soon(run, "bad", broken)
            nursery.start_soon(run, "b", _put(store, b"b", b"2"))
        return results

    results = trio.run(main)
    assert isinstance(results["bad"], ValueError)
    assert results["a"] is True and results["b"] is True
    with store.reading("data") as txn:
        assert txn.get(b"half") is None and txn.get(b"a") == b"1" and txn.get(b"b") == b"2"
    store.close()


def test_write_returns_fn_result_and_survives_reopen(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",))
    assert store.writer.write_sync(lambda txn: 42) == 42
    store.writer.write_sync(_put(store, b"x", b"y"))
    store.close()
    again = Store(tmp_path / "s", map_size=2**20, databases=("data",))
    with again.reading("data") as txn:
        assert txn.get(b"x") == b"y"
    again.close()


def test_tiny_map_grows_instead_of_failing(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",))
    for i in range(8):  # 8 MiB through a 1 MiB map
        store.writer.write_sync(_put(store, b"k%d" % i, bytes(2**20)))
    assert store.env.info()["map_size"] >= 8 * 2**20
    assert store.writer.stats.growths >= 3 and not store.writer.full
    store.close()


def test_map_at_its_ceiling_refuses_writes_with_a_clear_error_and_keeps_the_rest(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",), max_map_size=2**21)
    kept = []
    with pytest.raises(StorageError, match="ceiling"):
        for i in range(64):
            store.writer.write_sync(_put(store, b"k%d" % i, bytes(100_000)))
            kept.append(b"k%d" % i)
    assert store.writer.full and store.env.info()["map_size"] == 2**21
    assert kept  # what was acknowledged before is all there, and reads still work
    with store.reading("data") as txn:
        assert all(txn.get(k) == bytes(100_000) for k in kept)
    store.close()
    again = Store(tmp_path / "s", map_size=2**20, databases=("data",), max_map_size=2**21)
    assert again.get_meta("clean_shutdown", None) is False  # (running again)
    with again.reading("data") as txn:
        assert sum(1 for _ in txn.cursor()) == len(kept)
    again.close()


def test_platform_ceiling_leaves_address_space_on_32_bit():
    assert map_ceiling(32) == CEILING_32BIT == 2**30
    assert map_ceiling(64) == CEILING_64BIT
    assert map_ceiling() in (CEILING_32BIT, CEILING_64BIT)


def test_reads_from_many_threads_while_the_map_grows(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",))
    store.writer.write_sync(_put(store, b"fixed", b"value"))
    stop, errors = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                with store.reading("data") as txn:
                    assert txn.get(b"fixed") == b"value"
            except Exception as exc:  # collected and asserted below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(16):
        store.writer.write_sync(_put(store, b"k%d" % i, bytes(512 * 1024)))
    stop.set()
    for t in threads:
        t.join()
    assert errors == [] and store.writer.stats.growths >= 2
    store.close()


def test_closed_writer_refuses_and_write_sync_from_writer_thread_is_refused(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20)
    seen = []

    def nested(txn):
        try:
            store.writer.write_sync(lambda t: None)
        except Exception as exc:
            seen.append(exc)

    store.writer.write_sync(nested)
    assert seen and "deadlock" in str(seen[0])
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.writer.write_sync(lambda txn: None)


def test_write_batch_values_are_msgpack(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20)
    store.write_batch({("peers", b"n"): {"a": 1}})
    with store.reading("peers") as txn:
        assert msgpack.unpackb(txn.get(b"n")) == {"a": 1}
    assert isinstance(store.env, lmdb.Environment)
    store.close()


def test_storage_health_check_fails_once_the_map_is_full_at_its_ceiling(tmp_path):
    from types import SimpleNamespace

    from bzzz_edge.lifecycle.health import CheckFailed
    from bzzz_edge.observe import _storage_check

    store = Store(tmp_path / "s", map_size=2**20, databases=("data",), max_map_size=2**20)
    node = SimpleNamespace(store=store)  # what the check reads of a node: its real store
    assert "map 1 MiB" in trio.run(_storage_check, node)
    with pytest.raises(StorageError):
        for i in range(64):
            store.writer.write_sync(_put(store, b"k%d" % i, bytes(100_000)))
    with pytest.raises(CheckFailed, match="full at its ceiling of 1 MiB"):
        trio.run(_storage_check, node)
    store.close()
    with pytest.raises(CheckFailed, match="not open"):
        trio.run(_storage_check, node)


def test_write_now_commits_durably_in_the_calling_thread(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",))
    # Opening commits; on a loaded machine that sync can take long enough to count as a slow
    # disk (tested below), which is not this test's subject.
    store.writer.inline_max_seconds = 60.0
    inline_before = store.writer.stats.inline_commits
    threads = []

    def fn(txn):
        threads.append(threading.current_thread())
        txn.put(b"k", b"v", db=store.db("data"))
        return 7

    assert store.writer.write_now(fn) == (True, 7)
    assert threads == [threading.current_thread()]
    assert store.writer.stats.inline_commits == inline_before + 1
    store.close()
    again = Store(tmp_path / "s", map_size=2**20, databases=("data",))
    with again.reading("data") as txn:
        assert txn.get(b"k") == b"v"
    again.close()


def test_write_now_declines_while_the_writer_thread_commits(tmp_path):
    """Never two commits at once: while the writer thread is in a batch, ``write_now`` commits
    nothing and says so (the caller queues the write instead)."""
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",))
    store.writer.inline_max_seconds = 60.0  # (the slow commit must not count as a slow disk)
    inside, release = threading.Event(), threading.Event()

    def slow(txn):
        inside.set()
        release.wait(10)
        txn.put(b"slow", b"1", db=store.db("data"))

    async def main():
        pending = store.writer.start(slow)
        assert await trio.to_thread.run_sync(inside.wait, 10)
        assert store.writer.write_now(_put(store, b"inline", b"1")) == (False, None)
        release.set()
        await pending.result()
        assert store.writer.write_now(_put(store, b"inline", b"2"))[0]

    trio.run(main)
    with store.reading("data") as txn:
        assert txn.get(b"slow") == b"1" and txn.get(b"inline") == b"2"
    store.close()


def test_write_now_declines_on_a_slow_disk_a_full_map_and_a_closed_store(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",), max_map_size=2**21)
    assert store.writer.write_now(_put(store, b"a", b"1"))[0]
    store.writer.inline_max_seconds = 0.0  # every commit so far took longer than that
    assert store.writer.write_now(_put(store, b"b", b"1")) == (False, None)
    store.writer.inline_max_seconds = 1.0
    # Map full: nothing committed; the writer thread grows the map when the write is queued.
    big = _put(store, b"big", bytes(1_500_000))
    assert store.writer.write_now(big) == (False, None)
    with store.reading("data") as txn:
        assert txn.get(b"big") is None
    store.writer.write_sync(big)
    assert store.writer.stats.growths == 1
    store.close()
    assert store.writer.write_now(_put(store, b"c", b"1")) == (False, None)


def test_write_now_passes_on_what_fn_raises_and_commits_nothing(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20, databases=("data",))

    def broken(txn):
        txn.put(b"half", b"written", db=store.db("data"))
        raise ValueError("refused by its own rule")

    with pytest.raises(ValueError, match="its own rule"):
        store.writer.write_now(broken)
    with store.reading("data") as txn:
        assert txn.get(b"half") is None
    assert store.writer.write_now(_put(store, b"after", b"1"))[0]
    store.close()
