"""The routing table: bucket invariants under any sequence of updates, and the rule that a
stale entry leaves only after it failed a liveness check the shell ran."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.dht import (
    ID_BITS,
    CheckLiveness,
    Contact,
    DhtConfig,
    RoutingTable,
    bucket_index,
    distance,
    id_in_bucket,
)

SELF = hashlib.sha256(b"self").digest()
CONFIG = DhtConfig(k=4, replacement_cache=3, failures_before_check=2, refresh_interval=100.0)


def contact(node: bytes) -> Contact:
    return Contact(node, "10.0.0.1", 7947)


def in_bucket(index: int, seed: int) -> bytes:
    return id_in_bucket(SELF, index, random.Random(seed))


def check_invariants(table: RoutingTable) -> None:
    seen: set[bytes] = set()
    total = 0
    for index in range(ID_BITS):
        entries, candidates = table.bucket(index)
        assert len(entries) <= CONFIG.k
        assert len(candidates) <= CONFIG.replacement_cache
        for c in entries + candidates:
            assert c.node != SELF
            assert bucket_index(SELF, c.node) == index
        nodes = [c.node for c in entries]
        assert len(set(nodes)) == len(nodes)
        assert not set(nodes) & {c.node for c in candidates}
        assert not seen & set(nodes)
        seen |= set(nodes)
        total += len(entries)
    assert total == len(table)
    assert set(c.node for c in table.contacts()) == seen


# Few buckets and many IDs per bucket, so buckets fill and candidates queue.
node_ids = st.builds(in_bucket, st.integers(0, 3), st.integers(0, 40))
operations = st.lists(
    st.tuples(st.sampled_from(["seen", "failed", "alive", "dead", "remove"]), node_ids),
    max_size=120)


@settings(max_examples=150, deadline=None)
@given(operations, st.one_of(node_ids, st.binary(min_size=32, max_size=32), st.just(SELF)))
def test_invariants_hold_under_any_update_sequence(ops: list[tuple[str, bytes]],
                                                   target: bytes) -> None:
    table = RoutingTable(SELF, CONFIG, now=0.0)
    checking: set[bytes] = set()
    for step, (op, node) in enumerate(ops):
        before = set(c.node for c in table.contacts())
        if op == "seen":
            table.seen(contact(node), float(step))
        elif op == "failed":
            for check in table.failed(node):
                assert isinstance(check, CheckLiveness)
                assert check.contact.node not in checking, "a second check while one runs"
                checking.add(check.contact.node)
        elif op in ("alive", "dead"):
            table.check_result(node, op == "alive", float(step))
            checking.discard(node)
        else:
            table.remove(node)
            checking.discard(node)
        after = set(c.node for c in table.contacts())
        if op in ("seen", "failed", "alive"):
            assert before <= after, f"{op} evicted an entry"
        check_invariants(table)
    everyone = list(table.contacts())
    for count in (1, 3, 9):
        best = table.closest(target, count)
        assert best == sorted(everyone, key=lambda c: distance(c.node, target))[:count]


def test_full_bucket_keeps_old_entries_and_queues_newcomers() -> None:
    table = RoutingTable(SELF, CONFIG, now=0.0)
    old = [in_bucket(0, i) for i in range(4)]
    for node in old:
        table.seen(contact(node), 0.0)
    newcomers = [in_bucket(0, 100 + i) for i in range(5)]
    for node in newcomers:
        table.seen(contact(node), 1.0)
    entries, candidates = table.bucket(0)
    assert [c.node for c in entries] == old
    assert [c.node for c in candidates] == newcomers[-3:]  # bounded, most recent kept


def test_stale_entry_is_replaced_only_after_failing_its_check() -> None:
    table = RoutingTable(SELF, CONFIG, now=0.0)
    old = [in_bucket(0, i) for i in range(4)]
    for node in old:
        table.seen(contact(node), 0.0)
    newcomer = in_bucket(0, 99)
    table.seen(contact(newcomer), 1.0)
    assert table.failed(old[0]) == []  # one failure is not yet stale
    assert table.failed(old[0]) == [CheckLiveness(contact(old[0]))]
    assert table.failed(old[0]) == []  # the check is already running
    assert old[0] in table and newcomer not in table
    assert table.check_result(old[0], True, 2.0) is None
    assert old[0] in table and newcomer not in table
    table.failed(old[0])
    assert table.failed(old[0]) == [CheckLiveness(contact(old[0]))]
    assert table.check_result(old[0], False, 3.0) == contact(old[0])
    assert old[0] not in table and newcomer in table
    assert table.bucket(0)[1] == []


def test_refresh_targets_one_per_stale_bucket_within_range() -> None:
    table = RoutingTable(SELF, CONFIG, now=0.0)
    for index in range(3):
        table.seen(contact(in_bucket(index, 1)), 0.0)
    assert table.refresh_targets(50.0, random.Random(1)) == []
    table.touch(in_bucket(1, 7), 60.0)
    assert table.next_refresh() == 100.0
    targets = table.refresh_targets(100.0, random.Random(1))
    assert sorted(bucket_index(SELF, t) for t in targets) == [0, 2, 3]
    assert table.refresh_targets(100.0, random.Random(1)) == []
    assert [bucket_index(SELF, t) for t in table.refresh_targets(160.0, random.Random(1))] == [1]


@given(st.binary(min_size=32, max_size=32), st.integers(0, ID_BITS - 1), st.integers())
def test_id_in_bucket_lands_in_that_bucket(own: bytes, index: int, seed: int) -> None:
    assert bucket_index(own, id_in_bucket(own, index, random.Random(seed))) == index


def test_self_and_garbage_ids_are_never_entries() -> None:
    table = RoutingTable(SELF, CONFIG, now=0.0)
    table.seen(contact(SELF), 0.0)
    assert len(table) == 0 and SELF not in table
    assert table.failed(b"short") == [] and table.remove(b"short") is None


def test_closest_known_adds_the_replacement_candidates_a_full_bucket_left_out() -> None:
    table = RoutingTable(SELF, CONFIG, 0.0)
    nodes = [in_bucket(0, seed) for seed in range(6)]  # k = 4 entries, two candidates
    for node in nodes:
        table.seen(contact(node), 0.0)
    entries, candidates = table.bucket(0)
    assert len(entries) == 4 and [c.node for c in candidates] == nodes[4:]
    for target in (nodes[4], nodes[5], hashlib.sha256(b"t").digest()):
        everyone = sorted(nodes, key=lambda n: distance(n, target))
        assert [c.node for c in table.closest_known(target, 3)] == everyone[:3]
        assert {c.node for c in table.closest(target, 6)} == set(nodes[:4])  # entries only
    assert nodes[4] not in {c.node for c in table.closest(nodes[4], 4)}
    assert table.closest_known(nodes[4], 1) == [contact(nodes[4])]
