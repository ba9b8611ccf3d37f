"""``tasks.claim`` and ``raft.propose`` sent by a peer holding the network key to a real
coordinator (a two-node mesh, the insider dialling the coordinator): malformed requests, seconds
that are not a number, claims of unknown tasks, claims naming another node (forged) and a burst
of claims of one task are answered and counted; the node and its coordinator go on."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from bzzz_edge.cluster import ClusterNode, LocalCluster
from bzzz_edge.identity import load_network_key
from bzzz_edge.tasks import Profile
from bzzz_edge.tasks._commands import sign

pytestmark = pytest.mark.slow

_COUNTER = re.compile(r'^bzzz_edge_\w+_total\{event="([^"]+)"\} (\S+)$', re.M)


insider = sys.modules["_bzzz_test_harness_insider"]  # tests/_harness/insider.py, via conftest


def _get(node: ClusterNode, path: str) -> Any:
    with urllib.request.urlopen(node.api + path, timeout=10) as response:
        return response.read()


def _counters(node: ClusterNode) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in _COUNTER.findall(_get(node, "/metrics").decode()):
        out[name] = out.get(name, 0.0) + float(value)
    return out


def _grown(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


class _Mesh:
    def __init__(self, cluster: LocalCluster, key: bytes) -> None:
        self.cluster, self.key = cluster, key

    def coordinator(self) -> tuple[ClusterNode, bytes]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for node in self.cluster.nodes:
                status = json.loads(_get(node, "/api/v1/coordination"))
                if status.get("is_leader"):
                    return node, bytes.fromhex(status["group"])
            time.sleep(0.2)  # polling a subprocess's HTTP status: no event to wait on
        raise AssertionError("no coordinator elected")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Mesh]:
    base: Path = tmp_path_factory.mktemp("claim-insider")
    cluster = LocalCluster(base / "mesh", 2)
    try:
        cluster.start()
        cluster.wait_for_mesh(timeout=30)
        yield _Mesh(cluster, load_network_key(base / "mesh" / "network.key"))
    finally:
        cluster.stop()


def _claim(spy: Any, task_id: str, gen: int = 0, node: bytes | None = None) -> bytes:
    """A claim signed by the insider (``node``: the node ID it names instead, forged)."""
    class _As:
        node_id = node or spy.identity.node_id
        public_key_bytes = spy.identity.public_key_bytes
        private_key = spy.identity.private_key
    return sign(_As(), spy.network_id, "claim", time.time(),
                {"id": task_id, "profile": Profile({}, frozenset(), 10), "gen": gen},
                seq=time.time_ns() // 1000)


def _answers(spy: Any, first_id: int, count: int, timeout: float = 20) -> dict[int, Any]:
    wanted = set(range(first_id, first_id + count))

    def got() -> dict[int, Any]:
        out = {}
        for envelope in list(spy.received):
            if getattr(envelope, "type", None) == "rpc.resp":
                request_id, ok, answer = msgpack.unpackb(envelope.body)
                if request_id in wanted:
                    out[request_id] = (ok, answer)
        return out

    assert spy.wait_for(lambda: len(got()) == count, timeout), got()
    return got()


_IDS = iter(range(1_000_000, 1 << 62))


def _send(spy: Any, method: str, bodies: list[bytes]) -> int:
    """Send the requests in one write (IDs counting up); the ID of the first."""
    first = next(_IDS)
    ids = [first, *(next(_IDS) for _ in bodies[1:])]
    spy.send_payloads([insider.encode_envelope(insider.DirectMessage(
        *insider.RPC_REQUEST, msgpack.packb([i, method, body], use_bin_type=True)))
        for i, body in zip(ids, bodies, strict=True)])
    return first


def _connect(mesh: _Mesh) -> tuple[Any, ClusterNode, bytes]:
    node, group = mesh.coordinator()
    spy = insider.Insider.connect(("127.0.0.1", node.peer_port), mesh.key)
    spy.start_reader()
    assert spy.wait_joined()
    return spy, node, group


def test_insider_claims_are_answered_counted_and_the_coordinator_goes_on(mesh: _Mesh) -> None:
    spy, node, group = _connect(mesh)
    try:
        before = _counters(node)
        status_before = json.loads(_get(node, "/api/v1/coordination"))
        bodies = [b"\xc1", msgpack.packb([b"other", b"x", 1.0]),
                  msgpack.packb([group, "not bytes", 1.0]), msgpack.packb([group, b"x"]),
                  msgpack.packb([group, b"x" * 70_000, 1.0]),  # over max_command_bytes
                  msgpack.packb([group, _claim(spy, "no-such-task"), 1.0]),
                  msgpack.packb([group, _claim(spy, "forged", node=b"\x01" * 32), 1.0]),
                  *(msgpack.packb([group, _claim(spy, "burst"), 1.0]) for _ in range(60))]
        first = _send(spy, "tasks.claim", bodies)
        answers = _answers(spy, first, len(bodies))
        assert all(not answers[first + i][0] for i in range(4))  # malformed: refused
        assert "internal error" not in {a for ok, a in answers.values() if not ok}
        after = _counters(node)
        assert _grown(before, after, "malformed_claim_requests") == 4
        assert _grown(before, after, "conn_handler_failed") == 0
        status = json.loads(_get(node, "/api/v1/coordination"))
        assert status["leader"] == status_before["leader"]
        assert status["term"] == status_before["term"]
        assert node.running
    finally:
        spy.close()


def test_seconds_that_are_not_a_number_in_raft_propose_are_refused_before_anything_is_queued(
        mesh: _Mesh) -> None:
    # A NaN reached trio.move_on_at after the command was queued: the peer was told "internal
    # error" (a traceback logged) for a command the log then committed.
    spy, node, group = _connect(mesh)
    try:
        before = _counters(node)
        first = _send(spy, "raft.propose", [msgpack.packb([group, b"nan seconds", float("nan")])])
        (ok, answer), = _answers(spy, first, 1).values()
        after = _counters(node)
        assert not ok and "finite number" in answer, answer
        assert _grown(before, after, "conn_handler_failed") == 0, after
        committed = json.loads(_get(node, "/api/v1/coordination/log"))["entries"]
        assert not any(e["data"] == b"nan seconds".hex() for e in committed)
    finally:
        spy.close()
