"""The versioned UCXL store: versions through time, SPEC resolution, tombstones, listing,
dedup and compression, limits, hooks and the changes feed (real LMDB, through the writer)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import trio

from bzzz_edge.errors import CodecError, StorageError
from bzzz_edge.store import Store
from bzzz_edge.store._optimize import optimize
from bzzz_edge.store._records import ContentTooLarge, NotFound
from bzzz_edge.store.content import DATABASES, ContentStore, local_codec
from bzzz_edge.ucxl import NoSuchVersion, UCXLError
from bzzz_edge.wire.compression import Codec, decode

VECTORS = json.loads((Path(__file__).parents[1] / "ucxl" / "vectors.json").read_text())
A = "ucxl://gpt4:architect@chorus:design/*^/src/main.go"


def at(temporal: str, path: str = "/src/main.go") -> str:
    return f"ucxl://gpt4:architect@chorus:design/{temporal}{path}"


def test_versions_by_several_writers_are_numbered_and_navigable(content):
    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(content.put, A, b"writer %d" % i)

    trio.run(main)
    history = content.history(A)
    assert [v.version for v in history] == list(range(1, 21))
    bodies = [content.get(at(f"*{k}"))[1] for k in range(1, 21)]
    assert sorted(bodies) == sorted(b"writer %d" % i for i in range(20))
    assert content.get(at("*^"))[1] == bodies[-1] and content.get(at("*~"))[1] == bodies[0]
    assert content.get(at("~~3"))[1] == bodies[16] and content.get(at("^^2"))[1] == bodies[2]
    assert content.get(at("~~"))[0].version == 19
    with pytest.raises(NoSuchVersion) as info:
        content.get(at("*21"))
    assert info.value.versions == 20 and info.value.selected == 21


def test_every_spec_resolution_vector_through_the_store(tmp_path):
    counts = sorted({v["versions"] for v in VECTORS["resolution"]})
    store = Store(tmp_path / "s", map_size=2**22, databases=DATABASES)
    content = ContentStore(store, author="n", max_content_bytes=2**16, compress_min_bytes=128)

    async def fill():
        for n in counts:
            for k in range(1, n + 1):
                await content.put(f"ucxl://a:b@p:t/*^/n{n}", b"version %d" % k)

    trio.run(fill)
    for vector in VECTORS["resolution"]:
        n, address = vector["versions"], f"ucxl://a:b@p:t/{vector['temporal']}/n{vector['versions']}"
        if vector["selects"] is None:
            with pytest.raises(NoSuchVersion) as info:
                content.get(address)
            assert info.value.versions == n, vector
        else:
            version, body = content.get(address)
            assert version.version == vector["selects"], vector
            assert body == b"version %d" % vector["selects"]
    store.close()


def test_version_records_carry_author_time_hash_size_type_and_codec(content):
    body = b"a fairly compressible line of text\n" * 40
    version = trio.run(lambda: content.put(A, body, media_type="text/x-go"))
    got, data = content.get(A)
    assert data == body and got == version
    assert version.author == "node-a" and version.size == len(body)
    assert version.media_type == "text/x-go" and version.timestamp > 1.6e9
    assert version.codec == local_codec().name.lower() and version.stored < len(body) // 4
    assert version.address == at("*1") and len(version.hash) == 64


def test_equal_content_is_stored_once(content):
    async def main():
        for i in range(5):
            await content.put(f"ucxl://a:b@p:t/*^/copy{i}", b"same bytes " * 50)

    trio.run(main)
    stats = content.stats()
    assert stats["versions"] == 5 and stats["blobs"] == 1 and stats["addresses"] == 5
    assert stats["raw_bytes"] == 550 and stats["ratio"] > 5


def test_every_node_decodes_both_codecs(tmp_path):
    body = b"shared context " * 200
    store = Store(tmp_path / "s", map_size=2**22, databases=DATABASES)
    lz4 = ContentStore(store, author="n", max_content_bytes=2**20, compress_min_bytes=1,
                       codec=Codec.LZ4)
    zlib = ContentStore(store, author="n", max_content_bytes=2**20, compress_min_bytes=1,
                        codec=Codec.ZLIB)
    trio.run(lambda: lz4.put("ucxl://a:b@p:t/*^/lz4", body))
    trio.run(lambda: zlib.put("ucxl://a:b@p:t/*^/zlib", body + b"!"))
    assert zlib.get("ucxl://a:b@p:t/*^/lz4")[0].codec == "lz4"
    assert lz4.get("ucxl://a:b@p:t/*^/zlib")[0].codec == "zlib"
    assert zlib.get("ucxl://a:b@p:t/*^/lz4")[1] == body
    assert lz4.get("ucxl://a:b@p:t/*^/zlib")[1] == body + b"!"
    store.close()


def test_tombstones_keep_history_and_a_later_put_revives(content):
    async def main():
        await content.put(A, b"one")
        await content.put(A, b"two")
        tomb = await content.delete(A)
        assert tomb.deleted and tomb.version == 3
        with pytest.raises(NotFound) as info:
            content.get(A)
        assert info.value.deleted and info.value.versions == 3
        assert content.get(at("~~1"))[1] == b"two"
        with pytest.raises(NotFound):
            await content.delete(A)
        assert content.list("ucxl://*:*@*:*/*^")[0] == []
        assert [v.version for v in content.list("ucxl://*:*@*:*/*^", deleted=True)[0]] == [3]
        await content.put(A, b"three")
        assert content.get(A)[1] == b"three"
        assert [v.deleted for v in content.history(A)] == [False, False, True, False]

    trio.run(main)


def test_append_builds_on_the_latest_content(content):
    async def main():
        await content.append(A, b"first line\n", media_type="text/plain")
        await content.append(A, b"second line\n")
        version, body = content.get(A)
        assert body == b"first line\nsecond line\n" and version.media_type == "text/plain"

    trio.run(main)


def test_listing_by_wildcard_and_prefix_in_pages(content):
    rng = random.Random(7)
    names = [(rng.choice(["alice", "bob"]), rng.choice(["dev", "ops"]),
              rng.choice(["p1", "p2"]), rng.choice(["t1", "t2"]), f"/d{i % 3}/f{i}")
             for i in range(60)]

    async def main():
        for agent, role, project, task, path in names:
            await content.put(f"ucxl://{agent}:{role}@{project}:{task}/*^{path}", b"x")

    trio.run(main)
    unique = {f"ucxl://{a}:{r}@{p}:{t}/*^{path}" for a, r, p, t, path in names}
    for pattern in ("ucxl://*:*@*:*/*^", "ucxl://*:dev@p1:*/*^", "ucxl://alice:*@*:t2/*^",
                    "ucxl://*:*@p2:t1/*^/d1/", "ucxl://bob:ops@p1:t1/*^/d0/"):
        expected = {u for u in unique if _matches(pattern, u)}
        seen, token, pages = [], b"", 0
        while True:
            items, token = content.list(pattern, limit=7, after=token or b"")
            seen += [v.address.replace("/*1/", "/*^/") for v in items]
            pages += 1
            if token is None:
                break
        assert sorted(seen) == sorted(expected), pattern
        assert len(seen) == len(set(seen)) and pages >= len(expected) // 7


def _matches(pattern: str, address: str) -> bool:
    from bzzz_edge.ucxl import parse

    return parse(pattern).matches(address)


def test_bad_addresses_and_writes_are_refused_clearly(content):
    async def main():
        with pytest.raises(UCXLError) as info:
            await content.put("ucxl://a:b@p:t/*^/../etc", b"x")
        assert info.value.position > 0
        for address in ("ucxl://*:b@p:t/*^/x", "ucxl://a:b@p:t/*2/x", "ucxl://a:b@p:t/~~1/x"):
            with pytest.raises(UCXLError, match="cannot write"):
                await content.put(address, b"x")
        with pytest.raises(ContentTooLarge):
            await content.put(A, bytes(2**20 + 1))
        with pytest.raises(UCXLError, match="wildcard"):
            content.get("ucxl://*:b@p:t/*^/x")
        with pytest.raises(NoSuchVersion) as info:
            content.get(A)
        assert info.value.versions == 0

    trio.run(main)


def test_hooks_run_in_the_write_transaction_and_fail_it_atomically(content):
    seen = []

    def hook(txn, change):
        seen.append((change.kind, change.version.version))
        if change.version.version == 2:
            raise ValueError("the log refused")

    content.add_hook(hook)

    async def main():
        changes = content.changes.subscribe()
        await content.put(A, b"one")
        with pytest.raises(ValueError):
            await content.put(A, b"two")
        await content.announce(A)
        assert [c.kind for c in [await changes.receive(), await changes.receive()]] == [
            "put", "announce"]

    trio.run(main)
    assert [v.version for v in content.history(A)] == [1]  # nothing of the failed write
    assert ("announce", 1) in seen and content.announced(A)["version"] == 1


def test_optimize_compresses_raw_blobs_and_reclaims_unreferenced_ones(tmp_path):
    store = Store(tmp_path / "s", map_size=2**22, databases=DATABASES)
    raw = ContentStore(store, author="n", max_content_bytes=2**20, compress_min_bytes=2**20)
    body = b"compress me later " * 100
    trio.run(lambda: raw.put(A, body))
    assert raw.get(A)[0].codec == "raw"
    orphan = bytes(32)
    store.writer.write_sync(lambda txn: txn.put(orphan, b"\x00\x03abc", db=store.db("blobs")))
    tuned = ContentStore(store, author="n", max_content_bytes=2**20, compress_min_bytes=64)

    async def main():
        async with trio.open_nursery() as nursery:  # concurrent writes go on meanwhile
            nursery.start_soon(tuned.put, "ucxl://a:b@p:t/*^/other", b"y" * 500)
            result = await optimize(tuned)
        return result

    result = trio.run(main)
    assert result.compressed >= 1 and result.saved_bytes > 0 and result.reclaimed == 1
    version, data = tuned.get(A)
    assert data == body and version.codec == tuned.codec.name.lower()
    with store.reading("blobs") as txn:
        assert txn.get(orphan) is None
    assert tuned.get("ucxl://a:b@p:t/*^/other")[1] == b"y" * 500
    store.close()


def test_corrupt_blob_is_a_clear_error_not_a_crash(content):
    version = trio.run(lambda: content.put(A, b"z" * 1000))
    key = bytes.fromhex(version.hash)
    content._store.writer.write_sync(
        lambda txn: txn.put(key, b"\x01\xe8\x07garbage", db=content._store.db("blobs")))
    with pytest.raises(CodecError):
        content.get(A)
    with pytest.raises(CodecError):
        decode(b"\x07", max_size=10)


def test_closed_store_refuses_writes(content):
    content._store.close()
    with pytest.raises(StorageError):
        trio.run(lambda: content.put(A, b"late"))
