"""Clusters of real node processes on loopback: full meshes, failure detection, rejoin."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from bzzz_edge.cluster import LocalCluster
from bzzz_edge.net import CloseReason

pytestmark = pytest.mark.slow

local_cluster = sys.modules["_bzzz_test_harness_local_cluster"]  # tests/_harness, via conftest


def _log_tails(cluster: LocalCluster) -> str:
    """The end of every node's log, to explain an unexpected exit code."""
    return "\n".join(f"--- node{n.index}\n" + "\n".join(n.messages[-15:]) for n in cluster.nodes)


def _disconnections(cluster: LocalCluster) -> list[tuple[int, str, str]]:
    """Every connection a node lost: its index, the peer and the reason."""
    return [(n.index, entry["peer"], entry["reason"]) for n in cluster.nodes
            for entry in list(n.entries) if entry.get("event") == "peer_disconnected"]


# How a node sees its peer close the one of two connections that lost a duplicate race.
_DUPLICATE_CLOSED = {CloseReason.PEER_CLOSED.value, CloseReason.TRANSPORT_ERROR.value}


@pytest.mark.pure_nodes
@pytest.mark.parametrize("size", [2, 5, 10])
def test_cluster_forms_full_mesh_and_stops_cleanly(tmp_path, size):
    with LocalCluster(tmp_path, size) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        # Every node holds every other alive, and membership never doubted one. A connection
        # can still be missing for a moment after the mesh was first whole: when two nodes
        # dialled each other at once, one of the two connections is closed, and the side
        # that had registered the closed one has the other a few milliseconds later. So the
        # connections are checked by waiting for the whole mesh once more, not by a snapshot.
        for index, table in cluster.peer_tables().items():
            others = {n.short_id for n in cluster.nodes if n.index != index}
            alive = {pid[:15] for pid, p in table.items() if p["status"] == "alive"}
            assert alive == others, (index, table, _disconnections(cluster))
        cluster.wait_for_mesh(timeout=5)
        lost = _disconnections(cluster)
        assert {reason for _, _, reason in lost} <= _DUPLICATE_CLOSED, lost
        assert cluster.stop() == [0] * size, _log_tails(cluster)


@pytest.mark.pure_nodes
def test_killed_node_is_declared_dead_then_rejoins_with_higher_incarnation(tmp_path):
    with LocalCluster(tmp_path, 4) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        victim = cluster.nodes[2]
        before = cluster.nodes[0].peers()
        incarnation = next(p["incarnation"] for pid, p in before.items()
                           if pid[:15] == victim.short_id)
        mark = cluster.log_positions()
        cluster.kill(victim)
        cluster.wait_for_status(victim, "dead", timeout=10, since=mark)
        for index, table in cluster.peer_tables().items():
            row = next(p for pid, p in table.items() if pid[:15] == victim.short_id)
            assert row["status"] == "dead" and not row["connected"], index
        mark = cluster.log_positions()
        cluster.start_node(victim)
        cluster.wait_for_status(victim, "alive", timeout=15, since=mark)
        for index, table in cluster.peer_tables().items():
            if index == victim.index:
                continue
            row = next(p for pid, p in table.items() if pid[:15] == victim.short_id)
            assert row["status"] == "alive" and row["incarnation"] > incarnation, (index, row)
        assert cluster.stop() == [0] * 4, _log_tails(cluster)


def test_graceful_stop_is_reported_as_left(tmp_path):
    with LocalCluster(tmp_path, 3) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        leaver = cluster.nodes[1]
        mark = cluster.log_positions()
        assert leaver.process is not None
        leaver.process.terminate()
        assert leaver.process.wait(15) == 0
        cluster.wait_for_status(leaver, "left", timeout=10, since=mark)


def test_node_with_another_network_key_never_gets_in(tmp_path):
    with LocalCluster(tmp_path / "net", 2) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        seed = cluster.nodes[0]
        outsiders = LocalCluster(
            tmp_path / "outsider", 1, extra_args=[
                "--log-level", "debug",
                "--set", f"network.bootstrap_peers=127.0.0.1:{seed.peer_port}"])
        with outsiders:
            outsiders.start()
            outsider = outsiders.nodes[0]
            # Its dials to the seed keep failing at the handshake; wait for a couple of them.
            first = outsider.wait_for_log(rf"^dial 127\.0\.0\.1:{seed.peer_port} failed",
                                          timeout=15)
            outsider.wait_for_log(rf"^dial 127\.0\.0\.1:{seed.peer_port} failed", timeout=15,
                                  start=outsider.messages.index(first) + 1)
            assert outsider.peers() == {}
            for table in cluster.peer_tables().values():
                assert outsider.short_id not in {pid[:15] for pid in table}
            with urllib.request.urlopen(seed.api + "/metrics", timeout=5) as response:
                metrics = response.read().decode()
            failed = re.search(
                r'bzzz_edge_net_events_total\{event="handshake_failed_auth"\} (\S+)', metrics)
            assert failed and float(failed.group(1)) >= 2


def test_readiness_waits_for_min_peers(tmp_path):
    with LocalCluster(tmp_path, 2, extra_args=["--set", "health.min_peers=1"]) as cluster:
        first, second = cluster.nodes
        cluster.start_node(first)
        assert _status(first.api + "/health/ready") == 503
        cluster.start_node(second)
        cluster.wait_for_mesh(timeout=15)
        assert _status(first.api + "/health/ready") == 200
        assert _status(second.api + "/health/ready") == 200


def test_peers_command_lists_the_other_nodes(tmp_path, capsys):
    from bzzz_edge.cli import main

    with LocalCluster(tmp_path, 3) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        capsys.readouterr()
        assert main(["peers", "--data-dir", str(cluster.nodes[0].data_dir)]) == 0
        out = capsys.readouterr().out
        for node in cluster.nodes[1:]:
            line = next(line for line in out.splitlines() if line.startswith(node.short_id))
            assert f"node{node.index}" in line and " alive " in line and " yes " in line


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_cluster_command_runs_until_stopped(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bzzz_edge", "cluster", "--nodes", "3", "--dir", str(tmp_path),
         "--set", "node.name=labnode"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the mesh is up (or the command fails)
        assert re.match(r"3 nodes in a full mesh after [\d.]+s", first), first
        apis = [re.search(r"API (\S+)", proc.stdout.readline()) for _ in range(3)]
        for api in apis:  # every node got the --set
            assert api is not None
            with urllib.request.urlopen(api.group(1) + "/api/v1/node", timeout=10) as response:
                assert json.load(response)["name"] == "labnode"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "exit codes: 0 0 0" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("option, said", [
    (["--set", "membership.no_such_key=1"], "membership.no_such_key"),
    (["--data-dir", "somewhere"], "--data-dir does not apply"),
    (["--log-format", "text"], "--log-format does not apply"),
])
def test_cluster_command_refuses_what_cannot_apply_before_starting_any_node(
        tmp_path, option, said):
    proc = subprocess.run(
        [sys.executable, "-m", "bzzz_edge", "cluster", "--nodes", "2", "--dir",
         str(tmp_path / "c"), *option], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and said in proc.stderr, proc.stderr
    assert not (tmp_path / "c").exists()  # no node was set up
