"""Store writes in the log: queued inside the store write's own transaction, appended from
there, never lost (even when the node dies between the two commits)."""

from __future__ import annotations

import trio

from bzzz_edge.errors import StorageError
from bzzz_edge.identity import Identity
from bzzz_edge.signedlog.service import LogService
from bzzz_edge.signedlog.storage import DATABASES, verify_stored
from bzzz_edge.store import Store
from bzzz_edge.store.content import DATABASES as CONTENT_DATABASES
from bzzz_edge.store.content import ContentStore

ADDRESS = "ucxl://agent:role@project:task/*^/notes/{}.md"


def _open(path, identity):
    store = Store(path, map_size=8 * 2**20, databases=(*CONTENT_DATABASES, *DATABASES))
    content = ContentStore(store, author=identity.display_id, max_content_bytes=2**20,
                           compress_min_bytes=256)
    service = LogService(store, identity)
    content.add_hook(service.store_hook)
    return store, content, service


def _entries(service):
    with service.reader() as reader:
        verify_stored(reader, service.author)
        return [e for _, e in reader.entries(service.author)]


def test_store_writes_are_appended_in_order(tmp_path):
    identity = Identity.generate()
    store, content, service = _open(tmp_path / "s", identity)

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            nursery.start_soon(service.follow_store, content.changes.subscribe())
            for i in range(5):
                await content.put(ADDRESS.format(i), b"hello %d" % i)
            await content.delete(ADDRESS.format(0))
            await content.announce(ADDRESS.format(1))
            with trio.fail_after(10):
                while service.length < 7:
                    await service.appended.wait()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
        from bzzz_edge.signedlog import decode_entry

        key = identity.private_key.public_key()
        decoded = [decode_entry(e, key) for e in _entries(service)]
        assert [d.type for d in decoded] == ["ucxl_put"] * 5 + ["ucxl_delete", "ucxl_announce"]
        assert decoded[2].data["address"] == "ucxl://agent:role@project:task/*1/notes/2.md"
        assert decoded[2].data["version"] == 1 and decoded[2].data["size"] == 7
        with service.reader() as reader:
            assert reader.pending(10) == []  # appended and dropped in one commit
    finally:
        store.close()


def test_a_store_write_whose_log_append_never_ran_is_appended_at_the_next_start(tmp_path):
    identity = Identity.generate()
    store, content, service = _open(tmp_path / "s", identity)

    async def write_only():  # the node dies after the store write, before the log's commit
        await content.put(ADDRESS.format(1), b"kept")
        await content.put(ADDRESS.format(2), b"kept too")

    trio.run(write_only)
    store.close()
    store, content, service = _open(tmp_path / "s", identity)

    async def restart():
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            with trio.fail_after(10):
                while service.length < 2:
                    await service.appended.wait()
            await content.put(ADDRESS.format(3), b"after")  # numbered after the leftovers
            nursery.cancel_scope.cancel()

    try:
        trio.run(restart)
        assert len(_entries(service)) == 2
        with service.reader() as reader:
            assert len(reader.pending(10)) == 1  # the third is queued, not lost
    finally:
        store.close()


def test_a_full_store_refuses_appends_cleanly_and_the_log_still_verifies(tmp_path):
    identity = Identity.generate()
    store = Store(tmp_path / "s", map_size=2**20, max_map_size=2**20, databases=DATABASES)
    service = LogService(store, identity)
    failures = []

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for i in range(400):  # ~12 MB of entries into a 1 MiB map
                try:
                    await service.append("task_progress", {"i": i, "pad": "x" * 30_000})
                except StorageError as exc:
                    failures.append(str(exc))
                    break
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
        assert failures and "full" in failures[0]
        with service.reader() as reader:
            assert verify_stored(reader, service.author).length == service.length > 0
        assert service.chain.length == service.length  # reloaded: no gap for the next one
    finally:
        store.close()
