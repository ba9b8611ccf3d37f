"""Coordination on real node processes: election, kill -9 of the coordinator under a stream of
proposals, the whole cluster killed and restarted, hand-over on SIGTERM, the CLI."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time

import pytest

from bzzz_edge.cluster import LocalCluster

_harness = sys.modules["_bzzz_test_harness_raft_cluster"]  # loaded by tests/conftest.py
Proposer, check_logs, coordination = _harness.Proposer, _harness.check_logs, _harness.coordination
node_of, propose = _harness.node_of, _harness.propose
wait_for_coordinator = _harness.wait_for_coordinator

pytestmark = pytest.mark.slow


def _tails(cluster: LocalCluster) -> str:
    return "\n".join(f"--- node{n.index}\n" + "\n".join(n.messages[-20:]) for n in cluster.nodes)


def test_kill9_coordinator_under_proposals_loses_and_doubles_nothing(tmp_path):
    # A voter dead for a second is replaced: 5 voters, one killed, become 3 (odd, all live).
    with LocalCluster(tmp_path, 5, extra_args=["--set", "coordination.dead_after=1"]) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=30)
        first = wait_for_coordinator(cluster, voters=5, timeout=30)
        proposer = Proposer(cluster, threads=4)
        proposer.start()
        try:
            proposer.wait_acked(40, timeout=60)
            victim = node_of(cluster, first["leader"])
            killed_at = time.monotonic()
            cluster.kill(victim)
            second = wait_for_coordinator(cluster, voters=3, timeout=60,
                                          not_this=first["leader"])
            print(f"new coordinator after {time.monotonic() - killed_at:.2f}s (loaded machine)")
            proposer.wait_acked(len(proposer.acked) + 40, timeout=60)
        finally:
            proposer.stop()
        assert second["leader"] != first["leader"] and second["term"] > first["term"]
        assert victim.short_id not in {v[:15] for v in second["voters"]}  # dead: demoted
        logs = check_logs(cluster, proposer.acked)
        assert len(logs) == 4, _tails(cluster)
        assert cluster.stop() == [-signal.SIGKILL if n is victim else 0 for n in cluster.nodes]


def test_kill9_coordinator_is_replaced_on_its_closed_connections_alone(tmp_path):
    # Elections that wait at least 40 s and membership that probes every 10 s, waiting 10 s
    # for an ack (the probe the closed connection starts, too): within the 25 s allowed, only
    # the connections the kill closed can start the election.
    slow = ["coordination.heartbeat_interval=1", "coordination.election_timeout_min=40",
            "coordination.election_timeout_max=60", "membership.probe_interval=10",
            "membership.probe_timeout_initial=10", "membership.probe_timeout_max=30"]
    args = [arg for setting in slow for arg in ("--set", setting)]
    with LocalCluster(tmp_path, 3, extra_args=args) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=30)
        first = wait_for_coordinator(cluster, voters=3, timeout=30)
        victim = node_of(cluster, first["leader"])
        cluster.kill(victim)
        second = wait_for_coordinator(cluster, voters=3, timeout=25, not_this=first["leader"])
        assert second["term"] > first["term"]
        views = [p for n in cluster.nodes if n is not victim
                 for p in n.get("/api/v1/peers")["peers"] if p["node_id"] == first["leader"]]
        assert views and all(p["status"] == "alive" for p in views), \
            f"membership took part, the test no longer isolates the hint: {views}"


def test_whole_cluster_killed_and_restarted_keeps_everything_committed(tmp_path):
    with LocalCluster(tmp_path, 3) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=30)
        before = wait_for_coordinator(cluster, voters=3, timeout=30)
        proposer = Proposer(cluster, threads=3)
        proposer.start()
        try:
            proposer.wait_acked(60, timeout=60)
        finally:
            for node in cluster.nodes:  # mid-stream: proposals in flight die with the nodes
                cluster.kill(node)
            proposer.stop()
        acked = dict(proposer.acked)
        cluster.start_node(cluster.nodes[0])
        for node in cluster.nodes[1:]:
            cluster.start_node(node)
        after = wait_for_coordinator(cluster, voters=3, timeout=60)
        assert after["term"] > before["term"]
        status, answer = propose(cluster.nodes[1], "after-restart")
        assert status == 200, answer
        assert answer["index"] > max(acked.values())
        check_logs(cluster, {**acked, "after-restart": answer["index"]})
        assert cluster.stop() == [0, 0, 0], _tails(cluster)


def test_sigterm_coordinator_hands_over_and_leaves_the_configuration(tmp_path):
    with LocalCluster(tmp_path, 4) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=30)
        first = wait_for_coordinator(cluster, voters=3, timeout=30)
        leaving = node_of(cluster, first["leader"])
        mark = len(leaving.messages)
        assert leaving.process is not None
        leaving.process.send_signal(signal.SIGTERM)
        assert leaving.process.wait(20) == 0
        assert any("handed over" in m for m in leaving.messages[mark:]), _tails(cluster)
        after = wait_for_coordinator(cluster, voters=3, timeout=30, not_this=first["leader"])
        members = {m[:15] for m in after["voters"] + after["learners"]}
        deadline = time.monotonic() + 30
        while leaving.short_id in members and time.monotonic() < deadline:
            node_of(cluster, after["leader"]).wait_for_new_log(timeout=1.0)
            after = coordination(node_of(cluster, after["leader"]))
            members = {m[:15] for m in after["voters"] + after["learners"]}
        assert leaving.short_id not in members, after
        assert len(after["voters"]) == 3


def test_lone_node_is_its_own_coordinator_and_cli_shows_it(tmp_path):
    with LocalCluster(tmp_path, 1) as cluster:
        cluster.start()
        node = cluster.nodes[0]
        status = wait_for_coordinator(cluster, voters=1, timeout=30)
        code, answer = propose(node, "alone")
        assert code == 200, answer
        out = subprocess.run([sys.executable, "-m", "bzzz_edge", "coordinator", "--json",
                              "--api", node.api], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        shown = json.loads(out.stdout)
        printed_id = subprocess.run(
            [sys.executable, "-m", "bzzz_edge", "id", "--data-dir", str(node.data_dir)],
            capture_output=True, text=True, timeout=30).stdout.strip()
        assert shown["leader"] == printed_id == status["leader"]
        assert shown["voters"] == [printed_id] and shown["learners"] == []
        assert shown["commit_index"] >= answer["index"] and shown["term"] >= 1
        text = subprocess.run([sys.executable, "-m", "bzzz_edge", "coordinator", "--api",
                               node.api], capture_output=True, text=True, timeout=30).stdout
        assert printed_id in text and "(coordinator)" in text
        _http_propose_answers(node)
        bench = _harness.post(node, "/api/v1/coordination/bench",
                              {"proposers": 4, "seconds": 0.5})
        assert bench["commits"] > 0 and bench["failed"] == 0
        assert coordination(node)["commit_index"] >= answer["index"] + bench["commits"]


def _http_propose_answers(node) -> None:
    """POST /api/v1/coordination/propose answers as the API's other endpoints do: JSON with its
    length, 400 with ``{"error", "path"}``; the server's fast path (a body with a length) and
    the app (a chunked body, which the fast path leaves to it) with the same bytes."""
    host, port = node.api.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    path = "/api/v1/coordination/propose"

    def call(body: bytes, *, chunked: bool = False) -> tuple[int, str | None, bytes]:
        if chunked:
            conn.request("POST", path, iter([body]), {"content-type": "application/json"},
                         encode_chunked=True)
        else:
            conn.request("POST", path, body, {"content-type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        assert int(response.getheader("content-length")) == len(raw)
        return response.status, response.getheader("content-type"), raw

    for bad, says in [(b"{not json", "propose:"), (b"[1]", "JSON object"),
                      (b'{"nothing": 1}', "expected"), (b'{"data_hex": "zz"}', "propose:"),
                      (b'{"data": "x", "timeout": -1}', "timeout"),
                      (b'{"data": "x", "timeout": "soon"}', "timeout"), (b"\xff", "propose:")]:
        status, kind, raw = call(bad)
        answer = json.loads(raw)
        assert (status, kind, answer["path"]) == (400, "application/json", path), answer
        assert says in answer["error"], (bad, answer)
        assert call(bad, chunked=True) == (status, kind, raw)  # the app's answer, byte for byte
    status, kind, raw = call(b'{"data_hex": "00ff"}')  # kept alive across the refusals
    answer = json.loads(raw)
    assert (status, kind) == (200, "application/json") and set(answer) == {"index", "term"}
    status, kind, raw = call(b'{"data_hex": "01"}', chunked=True)
    assert (status, kind) == (200, "application/json")
    assert json.loads(raw)["index"] > answer["index"]
    conn.request("GET", path)
    assert conn.getresponse().status == 405  # the router still sees the path
    conn.close()
    _harness.wait_for_commit(node, answer["index"], timeout=10)
    held = [e for e in _harness.committed_log(node) if e["index"] == answer["index"]]
    assert held and held[0]["data"] == "00ff", held


def test_init_force_over_a_used_data_dir_drops_the_old_coordination_state(tmp_path):
    # A node founded its own group; `init --force` gives the data dir a new identity (as when a
    # Pi that ran alone joins another network). The old group names a node that no longer
    # exists: kept, it left the node waiting for ever for a coordinator ("follower, term 1").
    with LocalCluster(tmp_path, 1) as cluster:
        cluster.start()
        before = wait_for_coordinator(cluster, voters=1, timeout=30)
        assert cluster.stop() == [0]
    data_dir = tmp_path / "node0"
    forced = subprocess.run([sys.executable, "-m", "bzzz_edge", "init", "--force",
                             "--data-dir", str(data_dir)], capture_output=True, text=True,
                            timeout=60)
    assert forced.returncode == 0, forced.stderr
    new_id = subprocess.run([sys.executable, "-m", "bzzz_edge", "id", "--data-dir",
                             str(data_dir)], capture_output=True, text=True,
                            timeout=30).stdout.strip()
    assert new_id != before["leader"]
    with LocalCluster(tmp_path, 1) as cluster:  # a used dir is resumed: the identity on disk
        assert cluster.nodes[0].data_dir == data_dir
        cluster.start()
        after = wait_for_coordinator(cluster, voters=1, timeout=30)
        assert after["leader"] == new_id and after["voters"] == [new_id]
        assert any("held the coordination state of another identity" in m
                   for m in cluster.nodes[0].messages), _tails(cluster)
        assert cluster.stop() == [0]
