"""When the coordinator tells followers of a commit: at once, ahead of applying it, when no
proposal came with the batch that committed (nothing would carry the commit index sooner);
held for the proposals a commit wakes only under load. The order rule (``notices_first``),
and the counters on real node processes proposing one command at a time."""

from __future__ import annotations

import re
import sys
import urllib.request

import pytest

from bzzz_edge.cluster import ClusterNode, LocalCluster
from bzzz_edge.consensus import Entry, EntryKind
from bzzz_edge.consensus._batch import notices_first
from bzzz_edge.consensus._events import Apply, Send
from bzzz_edge.consensus._messages import AppendEntries

A, B, C, L = b"a" * 32, b"b" * 32, b"c" * 32, b"l" * 32  # L: a learner
VOTERS = frozenset({A, B, C})
ENTRY = (Entry(2, 6, EntryKind.COMMAND, b"x"),)


def test_notices_go_before_the_applying_unless_their_peer_has_an_earlier_message() -> None:
    apply = Apply(ENTRY)
    notice_a, notice_b = (Send(n, AppendEntries(2, 6, 2, 6, (), quiet=True)) for n in (A, B))
    to_learner = Send(L, AppendEntries(2, 5, 2, 6, ENTRY))  # a learner's: entries and commit
    append_c = Send(C, AppendEntries(2, 6, 2, 6, ENTRY))  # not a notice: stays where it is
    assert notices_first([apply, notice_a, append_c, to_learner], VOTERS) == \
        [notice_a, to_learner, apply, append_c]
    # b has another message in the batch: its notice keeps its place after it.
    append_b = Send(B, AppendEntries(2, 6, 2, 6, ENTRY))
    assert notices_first([apply, append_b, notice_b], VOTERS) == [apply, append_b, notice_b]
    assert notices_first([apply, append_c], VOTERS) == [apply, append_c]


_harness = sys.modules["_bzzz_test_harness_raft_cluster"]  # loaded by tests/conftest.py


def _counter(node: ClusterNode, event: str) -> int:
    text = urllib.request.urlopen(node.api + "/metrics", timeout=10).read().decode()
    line = f'bzzz_edge_coordination_events_total{{event="{event}"}} '
    found = re.search("^" + re.escape(line) + r"(\S+)$", text, re.M)
    assert found is not None, f"no {event} counter"
    return int(float(found.group(1)))


@pytest.mark.slow
def test_commits_at_rest_are_told_at_once(tmp_path) -> None:
    with LocalCluster(tmp_path, 3) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=30)
        status = _harness.wait_for_coordinator(cluster, voters=3, timeout=30)
        leader = _harness.node_of(cluster, status["leader"])
        before = _counter(leader, "notices_at_once"), _counter(leader, "notices_held")
        for number in range(5):  # one at a time: no batch that commits brings a proposal
            answer = _harness.propose(leader, f"command {number}")
            assert answer[0] == 200, answer
        after = _counter(leader, "notices_at_once"), _counter(leader, "notices_held")
        assert after[0] - before[0] >= 5 and after[1] == before[1]
