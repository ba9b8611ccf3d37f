"""The sans-IO log core: encoding, signatures, the hash chain, the Merkle tree, forks."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import DecodeError, SignatureError
from bzzz_edge.signedlog import (
    BadEntry,
    LogChain,
    canonical_pack,
    decode_entry,
    decode_head,
    inclusion_proof,
    root,
    verify_entry,
    verify_inclusion,
    verify_log,
)
from bzzz_edge.signedlog._merkle import EMPTY_ROOT, node_hash


def _author() -> tuple[Ed25519PrivateKey, bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    return key, hashlib.sha256(public).digest(), public


def _log(n: int):
    key, author, public = _author()
    chain = LogChain(author, public)
    entries, nodes = [], {}
    for i in range(n):
        entry, new = chain.append(key, "task_progress", {"task": f"t{i}", "pct": i % 100},
                                  1_700_000_000_000 + i)
        entries.append(entry)
        nodes.update({(level, idx): h for level, idx, h in new})
    return key, chain, entries, nodes


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH, written out recursively as the RFC does."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def test_entry_roundtrip_keeps_every_field():
    key, _chain, entries, _ = _log(3)
    entry = decode_entry(entries[2].encoded, key.public_key())
    assert entry == entries[2]
    assert entry.prev == entries[1].hash and entries[0].prev == bytes(32)
    assert entry.data == {"task": "t2", "pct": 2}


def test_canonical_pack_sorts_keys_and_refuses_what_has_no_canonical_form():
    assert canonical_pack({"b": 1, "a": 2}) == msgpack.packb({"a": 2, "b": 1})
    with pytest.raises(DecodeError, match="keys must be strings"):
        canonical_pack({1: "x"})
    with pytest.raises(DecodeError, match="set has no canonical"):
        canonical_pack({"a": {1, 2}})


def test_non_canonical_body_is_refused_even_when_signed():
    key, author, _public = _author()
    body = msgpack.packb([1, 0, 5, author, "task_failed", {"b": 1, "a": 2}, bytes(32)])
    from bzzz_edge.signedlog._codec import ENTRY_DOMAIN
    encoded = msgpack.packb([body, key.sign(ENTRY_DOMAIN + body)])
    with pytest.raises(DecodeError, match="canonical"):
        decode_entry(encoded, key.public_key())


def test_every_flipped_byte_of_an_entry_is_caught():
    _key, chain, entries, _ = _log(2)
    good = entries[1].encoded
    for i in range(len(good)):
        for bit in (0x01, 0x80):
            bad = bytearray(good)
            bad[i] ^= bit
            check = LogChain(chain.author, chain.public_key)
            check.accept(check.check_next(entries[0].encoded))
            with pytest.raises(BadEntry) as caught:
                check.check_next(bytes(bad))
            assert caught.value.index == 1


def test_wrong_key_is_a_signature_error():
    _key, _chain, entries, _ = _log(1)
    with pytest.raises(SignatureError):
        decode_entry(entries[0].encoded, Ed25519PrivateKey.generate().public_key())


def test_verify_log_accepts_a_good_log_and_names_its_length():
    key, chain, entries, _ = _log(20)
    head = decode_head(chain.sign_head(key, 1).encoded)
    result = verify_log(head, ((e.index, e.encoded) for e in entries))
    assert (result.length, result.root) == (20, chain.root())


@pytest.mark.parametrize("removed", [0, 7, 19])
def test_verify_log_catches_a_removed_entry(removed):
    key, chain, entries, _ = _log(20)
    head = chain.sign_head(key, 1)
    # Renumbered as a store would hold them after a deletion and compaction.
    kept = [e.encoded for e in entries if e.index != removed]
    with pytest.raises(BadEntry) as caught:
        verify_log(head, enumerate(kept))
    assert caught.value.index == removed


def test_verify_log_catches_a_gap_in_the_stored_indexes():
    key, chain, entries, _ = _log(10)
    with pytest.raises(BadEntry, match="missing") as caught:
        verify_log(chain.sign_head(key, 1), ((e.index, e.encoded) for e in entries if e.index != 4))
    assert caught.value.index == 4


def test_verify_log_catches_reordered_entries():
    key, chain, entries, _ = _log(10)
    order = [e.encoded for e in entries]
    order[3], order[4] = order[4], order[3]
    with pytest.raises(BadEntry) as caught:
        verify_log(chain.sign_head(key, 1), enumerate(order))
    assert caught.value.index == 3


def test_verify_log_catches_a_truncated_log_and_one_past_its_head():
    key, chain, entries, _ = _log(10)
    head = chain.sign_head(key, 1)
    with pytest.raises(BadEntry, match="vouches for 10") as caught:
        verify_log(head, ((e.index, e.encoded) for e in entries[:8]))
    assert caught.value.index == 8
    old_head = LogChain(chain.author, chain.public_key)
    for e in entries[:5]:
        old_head.accept(old_head.check_next(e.encoded))
    with pytest.raises(BadEntry, match="past the signed head"):
        verify_log(old_head.sign_head(key, 1), ((e.index, e.encoded) for e in entries))


def test_a_head_over_another_history_is_caught():
    key, chain, entries, _ = _log(6)
    forked = LogChain(chain.author, chain.public_key)
    for e in entries[:5]:
        forked.accept(forked.check_next(e.encoded))
    forked.append(key, "task_failed", {"task": "rewritten"}, 9)
    with pytest.raises(BadEntry, match="Merkle root"):
        verify_log(forked.sign_head(key, 1), ((e.index, e.encoded) for e in entries))


def test_a_fork_is_two_signed_entries_for_one_index():
    key, chain, entries, _ = _log(4)
    other = LogChain(chain.author, chain.public_key)
    for e in entries[:3]:
        other.accept(other.check_next(e.encoded))
    rival, _ = other.append(key, "task_completed", {"task": "other"}, 5)
    check = LogChain(chain.author, chain.public_key)
    for e in entries[:3]:
        check.accept(check.check_next(e.encoded))
    theirs = check.check_next(rival.encoded)  # a valid next link on its own...
    fork = LogChain.fork_of(entries[3], theirs)  # ...but the author signed another one
    assert fork is not None and fork.index == 3 and fork.kind == "entry"
    assert {fork.ours, fork.theirs} == {entries[3].encoded, rival.encoded}
    assert LogChain.fork_of(entries[3], entries[3]) is None


def test_head_signature_and_key_binding_are_checked():
    key, chain, _, _ = _log(3)
    head = chain.sign_head(key, 1)
    bad = bytearray(head.encoded)
    bad[-1] ^= 1
    with pytest.raises(SignatureError):
        decode_head(bytes(bad))
    other_key, _, _ = _author()
    impostor = LogChain(chain.author, other_key.public_key().public_bytes_raw())
    with pytest.raises(DecodeError, match="not the node ID"):
        decode_head(impostor.sign_head(other_key, 1).encoded)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_merkle_root_and_proofs_match_rfc6962(n, data):
    _key, chain, entries, nodes = _log(n)
    leaves = [e.hash for e in entries]
    lookup = lambda level, idx: nodes[(level, idx)]  # noqa: E731
    assert chain.root() == _reference_root(leaves) == root(n, lookup)
    size = data.draw(st.integers(min_value=1, max_value=n))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = inclusion_proof(index, size, lookup)
    verify_inclusion(leaves[index], index, size, proof, _reference_root(leaves[:size]))
    with pytest.raises(DecodeError):
        verify_inclusion(leaves[index], index, size, proof, _reference_root(leaves[:size])[::-1])
    if size > 1:
        other = (index + 1) % size
        with pytest.raises(DecodeError):
            verify_inclusion(leaves[other], index, size, proof, _reference_root(leaves[:size]))


def test_one_entry_is_checked_with_a_proof_and_a_head_alone():
    key, chain, entries, nodes = _log(37)
    head = decode_head(chain.sign_head(key, 1).encoded)
    proof = inclusion_proof(11, head.length, lambda level, idx: nodes[(level, idx)])
    entry = decode_entry(entries[11].encoded, head.key())
    verify_inclusion(entry.hash, entry.index, head.length, proof, head.root)
    with pytest.raises(DecodeError):
        verify_inclusion(entries[12].hash, 11, head.length, proof, head.root)


def test_verify_entry_checks_an_entry_with_only_its_proof_and_a_head():
    key, chain, entries, nodes = _log(21)
    head = chain.sign_head(key, 1).encoded
    proof = inclusion_proof(9, 21, lambda level, idx: nodes[(level, idx)])
    assert verify_entry(entries[9].encoded, proof, head).index == 9
    for bad_entry, bad_head in ((entries[10].encoded, head),
                                (entries[9].encoded, _log(21)[1].sign_head(key, 1).encoded)):
        with pytest.raises(BadEntry):
            verify_entry(bad_entry, proof, bad_head)


def test_resuming_from_peaks_continues_the_same_tree():
    key, chain, _entries, _nodes = _log(13)
    resumed = LogChain(chain.author, chain.public_key, length=13, tip=chain.tip,
                       peak_hashes=chain.peaks)
    a, _ = chain.append(key, "escalation", {"why": "x"}, 77)
    b, _ = resumed.append(key, "escalation", {"why": "x"}, 77)
    assert a == b and chain.root() == resumed.root()
    with pytest.raises(ValueError):
        LogChain(chain.author, chain.public_key, length=13, peak_hashes=[])


def test_bad_type_names_and_oversized_entries_are_refused():
    key, author, public = _author()
    chain = LogChain(author, public)
    with pytest.raises(DecodeError, match="type"):
        chain.append(key, "Bad Type!", {}, 1)
    with pytest.raises(DecodeError, match="over"):
        chain.append(key, "task_progress", {"blob": b"x" * 40_000}, 1)
    assert chain.length == 0
