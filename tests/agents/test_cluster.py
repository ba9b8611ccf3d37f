"""Agents on a real cluster of node processes: soon after start every node's ``agents --json``
lists all three with their configured roles and capabilities (well before the 30 s interval:
a node that joins is sent everyone's), and a role change made by a restart is seen by the
others. Roles are not reloadable (the task service's claim profile is built at start):
``reload`` says they need a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bzzz_edge.cluster import ClusterNode, LocalCluster
from bzzz_edge.errors import BzzzError
from bzzz_edge.ids import format_node_id

pytestmark = pytest.mark.slow

local_cluster = sys.modules["_bzzz_test_harness_local_cluster"]  # tests/_harness, via conftest

PROFILES = [(["backend"], ["python"]), (["frontend", "qa"], ["node", "browser"]),
            (["devops"], [])]


def configure(node: ClusterNode, roles: list[str], caps: list[str], extra: str = "") -> None:
    (node.data_dir / "config.toml").write_text(
        f"[agent]\nroles = {json.dumps(roles)}\ncapabilities = {json.dumps(caps)}\n{extra}")


def cli(node: ClusterNode, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bzzz_edge", *args, "--api", node.api],
                          capture_output=True, text=True, timeout=60)


def agents(node: ClusterNode) -> dict[str, dict[str, Any]]:
    return {a["node_id"]: a for a in node.get("/api/v1/agents")["agents"]}


def wait(node: ClusterNode, check: Callable[[dict[str, dict[str, Any]]], bool],
         timeout: float, what: str) -> dict[str, dict[str, Any]]:
    """Poll ``node``'s directory until ``check`` holds, waking on its log between polls."""
    deadline = time.monotonic() + timeout
    while True:
        seen = agents(node)
        if check(seen):
            return seen
        if time.monotonic() > deadline:
            raise BzzzError(f"node{node.index}: not {what} within {timeout:g}s: {seen}")
        node.wait_for_new_log(timeout=0.2)


def lists(cluster: LocalCluster, profiles: list[tuple[list[str], list[str]]]
          ) -> Callable[[dict[str, dict[str, Any]]], bool]:
    """Whether a directory holds every node of ``cluster`` alive with its profile."""
    want = {format_node_id(n.node_id): (sorted(r), sorted(c))
            for n, (r, c) in zip(cluster.nodes, profiles, strict=True)}

    def check(seen: dict[str, dict[str, Any]]) -> bool:
        return set(seen) == set(want) and all(
            a["roles"] is not None and (sorted(a["roles"]), a["capabilities"]) == want[i]
            and a["status"] == "alive" for i, a in seen.items())

    return check


def test_every_node_lists_all_three_with_their_roles_soon_after_start(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, 3) as cluster:
        for node, (roles, caps) in zip(cluster.nodes, PROFILES, strict=True):
            configure(node, roles, caps)
        began = time.monotonic()
        local_cluster.start_all(cluster)
        for node in cluster.nodes:
            wait(node, lists(cluster, PROFILES), timeout=20, what="listing all three")
        took = time.monotonic() - began
        for node in cluster.nodes:
            out = cli(node, "agents", "--json")
            assert out.returncode == 0, out.stderr
            listed = {a["node_id"]: a for a in json.loads(out.stdout)}
            assert lists(cluster, PROFILES)(listed)
            me = format_node_id(node.node_id)
            assert [i for i, a in listed.items() if a["self"]] == [me]
            assert listed[me]["name"] == f"node{node.index}"
            for a in listed.values():
                assert a["capacity"] == 4 and a["tasks_held"] == 0 and a["cpus"] >= 1
                assert 0 < a["memory_percent"] <= 100 and len(a["load"]) == 3
        table = cli(cluster.nodes[0], "agents")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["NODE", "NAME", "ROLES", "CAPABILITIES", "LOAD", "MEM",
                                    "TASKS", "HEARD"]
        assert any("node1" in line and "frontend,qa" in line and "browser,node" in line
                   for line in lines[1:])
        assert any("node2" in line and "devops" in line and "0/4" in line for line in lines)
        print(f"3 nodes: every directory complete {took:.1f} s after the first start")

        # Garbage published on the topic by a node is refused and counted by the others.
        first, garbler = cluster.nodes[0], cluster.nodes[1]
        assert 'event="refused_malformed"} 0.0' in metrics(first)
        assert "bzzz_edge_agents_known 3.0" in metrics(first)
        out = cli(garbler, "pub", "bzzz/agents/v1", "not an agents message")
        assert out.returncode == 0, out.stderr
        wait(first, lambda _: 'event="refused_malformed"} 1.0' in metrics(first), timeout=20,
             what="counting the garbage")
        assert lists(cluster, PROFILES)(agents(first))
        assert cluster.stop() == [0, 0, 0]


def metrics(node: ClusterNode) -> str:
    with urllib.request.urlopen(node.api + "/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_a_role_change_needs_a_restart_and_the_others_see_it(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, 3) as cluster:
        for node, (roles, caps) in zip(cluster.nodes, PROFILES, strict=True):
            configure(node, roles, caps)
        local_cluster.start_all(cluster)
        for node in cluster.nodes:
            wait(node, lists(cluster, PROFILES), timeout=20, what="listing all three")
        changed = [*PROFILES[:2], (["qa"], ["gpu"])]
        target = cluster.nodes[2]
        configure(target, *changed[2], extra="availability_interval = 5.0\n")
        out = cli(target, "reload")
        assert out.returncode == 0, out.stderr
        assert "applied agent.availability_interval" in out.stdout
        needing = out.stdout.split("needing a restart:")[1]
        assert "agent.roles" in needing and "agent.capabilities" in needing
        own = agents(target)[format_node_id(target.node_id)]
        assert list(own["roles"]) == ["devops"]  # still the roles it started with

        gone = format_node_id(target.node_id)
        assert target.process is not None
        target.process.terminate()
        assert target.process.wait(30) == 0
        for node in cluster.nodes[:2]:
            wait(node, lambda seen: seen.get(gone, {}).get("status") == "left", timeout=20,
                 what="marking node2 left")
        cluster.start_node(target)
        for node in cluster.nodes:
            wait(node, lists(cluster, changed), timeout=20, what="seeing node2's new roles")
        assert cluster.stop() == [0, 0, 0]
