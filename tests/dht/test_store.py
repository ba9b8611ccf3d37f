"""The record store: only the publisher replaces its record, with a higher version; limits
hold; expiry and re-replication follow the schedule; and the per-peer limiter."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.dht import DhtConfig, Kind, PeerLimiter, Record, RecordStore, Verdict, sign_record

NET = b"test network"
KEYS = [Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"%d" % i).digest())
        for i in range(4)]
CONFIG = DhtConfig(max_records=6, max_records_per_publisher=3, max_publishers_per_key=2,
                   record_ttl=100.0, replicate_interval=30.0)


def rec(publisher: int = 0, key: int = 0, version: int = 1, value: bytes = b"v") -> Record:
    return sign_record(KEYS[publisher], network_id=NET, kind=Kind.VALUE,
                       key=hashlib.sha256(b"key %d" % key).digest(), version=version,
                       timestamp_ms=version, value=value)


class Verifier:
    def __init__(self, answer: bool = True) -> None:
        self.calls = 0
        self.answer = answer

    def __call__(self, record: Record) -> bool:
        self.calls += 1
        return self.answer


def test_only_a_higher_version_replaces_and_stale_ones_cost_no_signature_check() -> None:
    store, verify = RecordStore(CONFIG), Verifier()
    assert store.put(rec(version=2), 0.0, verify) is Verdict.STORED
    assert store.put(rec(version=1, value=b"old"), 0.0, verify) is Verdict.STALE_VERSION
    assert store.put(rec(version=2, value=b"replay"), 0.0, verify) is Verdict.STALE_VERSION
    assert verify.calls == 1
    assert store.put(rec(version=3, value=b"new"), 0.0, verify) is Verdict.STORED
    assert [r.value for r in store.get(Kind.VALUE, rec().key)] == [b"new"]


def test_another_publisher_gets_its_own_slot_never_the_first_ones() -> None:
    store = RecordStore(CONFIG)
    store.put(rec(0, version=5), 0.0, Verifier())
    assert store.put(rec(1, version=9, value=b"theirs"), 0.0, Verifier()) is Verdict.STORED
    held = {r.publisher_key: r for r in store.get(Kind.VALUE, rec().key)}
    assert held[rec(0).publisher_key].version == 5
    assert store.put(rec(2), 0.0, Verifier()) is Verdict.KEY_FULL


def test_a_record_failing_verification_is_not_kept() -> None:
    store = RecordStore(CONFIG)
    assert store.put(rec(), 0.0, Verifier(False)) is Verdict.INVALID
    assert len(store) == 0 and store.get(Kind.VALUE, rec().key) == []


def test_per_publisher_and_total_limits() -> None:
    store = RecordStore(CONFIG)
    for key in range(3):
        assert store.put(rec(0, key), 0.0, Verifier()) is Verdict.STORED
    assert store.put(rec(0, 3), 0.0, Verifier()) is Verdict.PUBLISHER_FULL
    for key in range(3):
        assert store.put(rec(1, key), 0.0, Verifier()) is Verdict.STORED
    assert store.put(rec(2, 5), 0.0, Verifier()) is Verdict.STORE_FULL
    assert store.put(rec(0, 0, version=2), 0.0, Verifier()) is Verdict.STORED  # replacing is fine


def test_expiry_counts_from_the_last_store() -> None:
    store = RecordStore(CONFIG)
    store.put(rec(0, 0), 0.0, Verifier())
    store.put(rec(0, 1), 0.0, Verifier())
    assert store.put(rec(0, 1), 50.0, Verifier()) is Verdict.REFRESHED
    assert store.expire(99.0) == []
    assert [r.key for r in store.expire(100.0)] == [rec(0, 0).key]
    assert store.expire(149.0) == [] and len(store.expire(150.0)) == 1
    assert len(store) == 0


def test_replication_schedule_and_refresh_postpones_it() -> None:
    store = RecordStore(CONFIG)
    store.put(rec(0, 0), 0.0, Verifier())
    store.put(rec(0, 1), 0.0, Verifier())
    store.put(rec(0, 1), 10.0, Verifier())  # someone else re-stored it: they replicate now
    assert [r.key for r in store.due_for_replication(30.0, 10)] == [rec(0, 0).key]
    assert store.due_for_replication(30.0, 10) == []
    store.mark_for_replication(rec(0, 1), 31.0)
    assert [r.key for r in store.due_for_replication(31.0, 10)] == [rec(0, 1).key]


def test_refresh_floods_keep_the_heaps_bounded() -> None:
    store = RecordStore(CONFIG)
    store.put(rec(), 0.0, Verifier())
    for step in range(1000):
        store.put(rec(), float(step), Verifier())
    assert len(store._expiry) <= 4 * len(store) + 65
    assert len(store._replication) <= 4 * len(store) + 65


def test_peer_limiter_burst_then_rate_and_bounded_table() -> None:
    limiter = PeerLimiter(rate=10.0, burst=5, max_peers=3)
    assert [limiter.allow(b"a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow(b"a", 0.05) is False
    assert limiter.allow(b"a", 0.1) is True
    for peer in (b"b", b"c", b"d"):
        limiter.allow(peer, 1.0)
    assert len(limiter) == 3 and limiter.refused == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 6)), max_size=30))
def test_each_publisher_slot_holds_the_highest_version_it_was_offered(
        offers: list[tuple[int, int]]) -> None:
    store = RecordStore(DhtConfig())
    best: dict[int, int] = {}
    for publisher, version in offers:
        verdict = store.put(SIGNED[(publisher, version)], 0.0, Verifier())
        assert verdict.accepted == (version >= best.get(publisher, 0))
        best[publisher] = max(best.get(publisher, 0), version)
        held = {r.publisher_key: r.version for r in store.get(Kind.VALUE, SIGNED[(0, 1)].key)}
        assert held == {SIGNED[(p, 1)].publisher_key: v for p, v in best.items()}


SIGNED = {(p, v): rec(p, 0, v, b"same") for p in range(3) for v in range(1, 7)}
