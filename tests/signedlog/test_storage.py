"""Logs in a real LMDB file: written as the service writes them, checked as `log verify` does."""

from __future__ import annotations

import hashlib

import lmdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.errors import BzzzError, DecodeError, StorageError
from bzzz_edge.ids import short_id
from bzzz_edge.signedlog import BadEntry, LogChain, decode_entry, verify_inclusion
from bzzz_edge.signedlog._codec import decode_head, sign_head
from bzzz_edge.signedlog.storage import (
    DATABASES,
    LogDbs,
    LogReader,
    open_readonly,
    verify_stored,
    write_entries,
    write_fork,
)


@pytest.fixture
def env(tmp_path):
    env = lmdb.open(str(tmp_path / "store"), map_size=64 * 2**20, max_dbs=64, subdir=True)
    dbs = LogDbs(*(env.open_db(name.encode()) for name in DATABASES))
    yield env, dbs
    env.close()


def _write_log(env, dbs, n, *, batch=7):
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    author = hashlib.sha256(public).digest()
    chain = LogChain(author, public)
    pending = []
    for i in range(n):
        pending.append(chain.append(key, "task_announced", {"task": i}, 1000 + i))
        if len(pending) == batch or i == n - 1:
            head = chain.sign_head(key, 2000 + i)
            with env.begin(write=True) as txn:
                write_entries(txn, dbs, pending, head)
            pending = []
    return key, author


def _verify(env, dbs, author):
    with env.begin() as txn:
        return verify_stored(LogReader(txn, dbs), author)


def test_a_stored_log_verifies_and_resumes_where_it_stopped(env):
    env, dbs = env
    key, author = _write_log(env, dbs, 50)
    assert _verify(env, dbs, author).length == 50
    with env.begin() as txn:
        chain = LogReader(txn, dbs).chain(author)
    assert chain is not None and chain.length == 50
    entry, nodes = chain.append(key, "task_failed", {"task": 50}, 5)
    with env.begin(write=True) as txn:
        write_entries(txn, dbs, [(entry, nodes)], chain.sign_head(key, 6))
    assert _verify(env, dbs, author).length == 51


def test_an_entry_that_does_not_follow_the_stored_ones_is_refused(env):
    env, dbs = env
    key, author = _write_log(env, dbs, 5)
    with env.begin() as txn:
        chain = LogReader(txn, dbs).chain(author)
    first = chain.append(key, "escalation", {}, 1)
    second = chain.append(key, "escalation", {}, 2)
    with pytest.raises(StorageError, match="does not follow") as refused, \
            env.begin(write=True) as txn:
        write_entries(txn, dbs, [second], chain.sign_head(key, 3))
    assert str(refused.value).startswith(f"log {short_id(author)}: entry ")  # the one short form
    assert _verify(env, dbs, author).length == 5
    with env.begin(write=True) as txn:
        write_entries(txn, dbs, [first, second], chain.sign_head(key, 3))
    assert _verify(env, dbs, author).length == 7


def _entry_key(author, index):
    return author + index.to_bytes(8, "big")


@pytest.mark.parametrize("index", [0, 13, 29])
def test_a_flipped_byte_on_disk_is_named_by_its_entry(env, index):
    env, dbs = env
    _, author = _write_log(env, dbs, 30)
    with env.begin(write=True) as txn:
        raw = bytearray(txn.get(_entry_key(author, index), db=dbs.entries))
        raw[len(raw) // 2] ^= 0x10
        txn.put(_entry_key(author, index), bytes(raw), db=dbs.entries)
    with pytest.raises(BadEntry) as caught:
        _verify(env, dbs, author)
    assert caught.value.index == index


def test_a_removed_or_swapped_entry_on_disk_is_caught(env):
    env, dbs = env
    _, author = _write_log(env, dbs, 20)
    with env.begin(write=True) as txn:
        a = txn.get(_entry_key(author, 5), db=dbs.entries)
        b = txn.get(_entry_key(author, 6), db=dbs.entries)
        txn.put(_entry_key(author, 5), b, db=dbs.entries)
        txn.put(_entry_key(author, 6), a, db=dbs.entries)
    with pytest.raises(BadEntry) as caught:
        _verify(env, dbs, author)
    assert caught.value.index == 5
    with env.begin(write=True) as txn:
        txn.put(_entry_key(author, 5), a, db=dbs.entries)
        txn.put(_entry_key(author, 6), b, db=dbs.entries)
        txn.delete(_entry_key(author, 19), db=dbs.entries)
    with pytest.raises(BadEntry, match="missing") as caught:
        _verify(env, dbs, author)
    assert caught.value.index == 19


def test_a_damaged_merkle_node_or_head_is_caught(env):
    env, dbs = env
    _, author = _write_log(env, dbs, 16)
    node_key = author + bytes((2,)) + (1).to_bytes(8, "big")
    with env.begin(write=True) as txn:
        good = txn.get(node_key, db=dbs.tree)
        txn.put(node_key, bytes(32), db=dbs.tree)
    with pytest.raises(BadEntry, match=r"Merkle node \(2, 1\)") as caught:
        _verify(env, dbs, author)
    assert caught.value.index == 7
    with env.begin(write=True) as txn:
        txn.put(node_key, good, db=dbs.tree)
        head = bytearray(txn.get(author, db=dbs.heads))
        head[-3] ^= 1
        txn.put(author, bytes(head), db=dbs.heads)
    with pytest.raises(BadEntry, match=r"head .* damaged"):
        _verify(env, dbs, author)


def test_recorded_fork_evidence_makes_the_log_fail(env):
    env, dbs = env
    _, author = _write_log(env, dbs, 4)
    from bzzz_edge.signedlog import Fork
    with env.begin(write=True) as txn:
        write_fork(txn, dbs, Fork(author, 2, "entry", b"a", b"b"), 1)
    with pytest.raises(BadEntry, match="FORK") as caught:
        _verify(env, dbs, author)
    assert caught.value.index == 2
    with env.begin() as txn:
        assert LogReader(txn, dbs).forks(author)[0].theirs == b"b"


def test_proofs_from_the_store_check_one_entry_against_the_head(env):
    env, dbs = env
    _, author = _write_log(env, dbs, 45)
    with env.begin() as txn:
        reader = LogReader(txn, dbs)
        head = reader.head(author)
        entry = decode_entry(reader.entry(author, 21), head.key())
        verify_inclusion(entry.hash, 21, head.length, reader.proof(author, 21, head.length),
                         head.root)
        assert reader.root(author, head.length) == head.root
        assert len(reader.batch(author, 40, 100, 10**6)) == 5
        assert len(reader.batch(author, 0, 100, 1)) == 1  # always at least one


def test_open_readonly_reads_a_store_and_explains_what_is_missing(env, tmp_path):
    env, dbs = env
    _, author = _write_log(env, dbs, 3)
    env.close()  # LMDB allows one environment per file per process
    ro_env, ro_dbs = open_readonly(tmp_path / "store")
    try:
        assert _verify(ro_env, ro_dbs, author).length == 3
    finally:
        ro_env.close()
    with pytest.raises(BzzzError, match="no store"):
        open_readonly(tmp_path / "nowhere")
    bare = lmdb.open(str(tmp_path / "bare"), max_dbs=4)
    bare.close()
    with pytest.raises(BzzzError, match="no signed log"):
        open_readonly(tmp_path / "bare")


@pytest.fixture
def parallel(monkeypatch):
    from bzzz_edge.signedlog import _parallel, storage

    monkeypatch.setattr(storage, "PARALLEL_MIN", 10)
    monkeypatch.setattr(_parallel, "CHUNK", 16)  # several chunks, finishing in any order


def _flip_signature(env, dbs, author, index):
    with env.begin(write=True) as txn:
        raw = bytearray(txn.get(_entry_key(author, index), db=dbs.entries))
        raw[-5] ^= 0x01  # inside the 64-byte signature, the last field
        txn.put(_entry_key(author, index), bytes(raw), db=dbs.entries)


def test_signatures_checked_in_worker_threads_name_the_first_bad_entry(env, parallel):
    env, dbs = env
    _, author = _write_log(env, dbs, 120)
    with env.begin() as txn:
        assert verify_stored(LogReader(txn, dbs), author, workers=2).length == 120
    _flip_signature(env, dbs, author, 77)
    _flip_signature(env, dbs, author, 33)
    with env.begin() as txn, pytest.raises(BadEntry, match="signature") as caught:
        verify_stored(LogReader(txn, dbs), author, workers=2)
    assert caught.value.index == 33


def test_in_parallel_a_broken_chain_before_a_bad_signature_is_named_first(env, parallel):
    env, dbs = env
    _, author = _write_log(env, dbs, 60)
    _flip_signature(env, dbs, author, 50)
    with env.begin(write=True) as txn:
        txn.delete(_entry_key(author, 12), db=dbs.entries)
    with env.begin() as txn, pytest.raises(BadEntry, match="missing") as caught:
        verify_stored(LogReader(txn, dbs), author, workers=2)
    assert caught.value.index == 12


@pytest.mark.parametrize("where", [3, 40, 95])
def test_in_parallel_any_damaged_entry_is_named_as_one_thread_names_it(env, parallel, where):
    env, dbs = env
    _, author = _write_log(env, dbs, 100)
    with env.begin() as txn:
        one = verify_stored(LogReader(txn, dbs), author, workers=1)
        two = verify_stored(LogReader(txn, dbs), author, workers=2)
    assert (one.length, one.root) == (two.length, two.root) == (100, one.root)
    with env.begin(write=True) as txn:  # a byte of the body flipped: no longer canonical
        raw = bytearray(txn.get(_entry_key(author, where), db=dbs.entries))
        raw[12] ^= 0x80
        txn.put(_entry_key(author, where), bytes(raw), db=dbs.entries)
    caught = []
    for workers in (1, 2):
        with env.begin() as txn, pytest.raises(BadEntry) as exc:
            verify_stored(LogReader(txn, dbs), author, workers=workers)
        caught.append((exc.value.index, exc.value.reason))
    assert caught[0] == caught[1] and caught[0][0] == where


def test_a_head_whose_author_is_not_its_keys_node_id_is_refused():
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    own = hashlib.sha256(public).digest()
    root = bytes(32)
    assert decode_head(sign_head(key, author=own, length=0, root=root,
                                 timestamp_ms=1).encoded).author == own
    with pytest.raises(DecodeError, match="not the node ID of its public key"):
        decode_head(sign_head(key, author=bytes(32), length=0, root=root,
                              timestamp_ms=1).encoded)
