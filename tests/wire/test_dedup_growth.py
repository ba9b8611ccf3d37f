"""The compiled dedup cache's growth (1,024 IDs, doubling up to max_entries) against
the pure twin, as a Hypothesis state machine: bursts of fresh IDs (growth, and eviction once at
the bound), batches mixing fresh and held IDs (a resize inside a prefetch group), clock moves
that expire the ring's head (so each growth copies a wrapped ring), and lookups. Every answer
and every counter must be the pure twin's. Run under .ci/asan too (memory safety). From a
review (review17b)."""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bzzz_edge import _native

compiled = _native.compiled_module("dedup")
pure = _native.pure_module("dedup")
if compiled is None and os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1":
    raise RuntimeError("compiled dedup module missing but BZZZ_EDGE_REQUIRE_NATIVE=1")
pytestmark = pytest.mark.skipif(compiled is None, reason="compiled dedup module not built")

_ids = itertools.count()


def _fresh(n: int) -> list[bytes]:
    return [hashlib.blake2b(next(_ids).to_bytes(8, "big"), digest_size=16).digest()
            for _ in range(n)]


class Growth(RuleBasedStateMachine):
    @initialize(max_entries=st.sampled_from([1023, 1024, 1025, 1500, 2047, 2048, 2049, 3000,
                                              4095, 4096]),
                ttl=st.sampled_from([1.0, 3.0, 50.0]))
    def make(self, max_entries: int, ttl: float) -> None:
        self.a = compiled.DedupCache(ttl, max_entries)
        self.b = pure.DedupCache(ttl, max_entries)
        self.now = 0.0
        self.held: list[bytes] = []

    def _check(self, name: str, *args: object) -> object:
        got = getattr(self.a, name)(*args)
        want = getattr(self.b, name)(*args)
        assert got == want, (name, len(self.a), len(self.b))
        return got

    @rule(n=st.integers(1, 1300), singles=st.booleans())
    def burst(self, n: int, singles: bool) -> None:
        ids = _fresh(n)
        if singles:
            for m in ids:
                self._check("check_and_insert", m, self.now)
        else:
            self._check("check_and_insert_many", ids, self.now)
        self.held = (self.held + ids)[-8000:]

    @precondition(lambda self: self.held)
    @rule(fresh=st.integers(0, 200), old=st.integers(0, 200), data=st.data())
    def mixed_batch(self, fresh: int, old: int, data: st.DataObject) -> None:
        ids = _fresh(fresh) + [data.draw(st.sampled_from(self.held)) for _ in range(old)]
        ids = data.draw(st.permutations(ids))
        self._check("check_and_insert_many", ids, self.now)
        self.held = (self.held + ids)[-8000:]

    @rule(dt=st.sampled_from([0.0, 0.3, 0.9, 1.0, 2.5, -1.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._check("expire", self.now)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def lookup(self, data: st.DataObject) -> None:
        self._check("contains", data.draw(st.sampled_from(self.held)), self.now)

    @invariant()
    def same_counters(self) -> None:
        if hasattr(self, "a"):
            state = lambda c: (len(c), c.hits, c.inserts, c.evictions, c.expirations)  # noqa: E731
            assert state(self.a) == state(self.b)


Growth.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_growth_matches_pure_twin = Growth.TestCase
