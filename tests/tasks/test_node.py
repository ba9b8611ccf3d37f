"""Tasks on a real node process: the CLI and the API, refusals with their reasons, results as
UCXL content, events on the signed log and the topic, and the task state across a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bzzz_edge.cluster import ClusterNode, LocalCluster
from bzzz_edge.signedlog.storage import open_readonly

pytestmark = pytest.mark.slow


def cli(node: ClusterNode, *args: str, stdin: bytes | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bzzz_edge", *args, "--api", node.api],
                          capture_output=True, text=True, timeout=60,
                          input=None if stdin is None else stdin.decode())


def api(node: ClusterNode, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(node.api + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _log_pending(node: ClusterNode) -> int:
    """Entries queued in the store for the log and not appended (``log_pending``)."""
    env, _ = open_readonly(node.data_dir / "store")
    try:
        pending = env.open_db(b"log_pending", create=False)
        with env.begin() as txn:
            return int(txn.stat(pending)["entries"])
    finally:
        env.close()


def node_id(node: ClusterNode) -> str:
    return subprocess.run([sys.executable, "-m", "bzzz_edge", "id", "--data-dir",
                           str(node.data_dir)], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def test_task_cli_and_api_on_a_lone_node_and_state_survives_restart(
        tmp_path: Path, raft_harness: Any) -> None:
    extra = ["--set", "agent.roles=backend,docs", "--set", "agent.capabilities=python",
             "--set", "agent.custom_roles=docs=docs/* *.md", "--set", "agent.capacity=2"]
    with LocalCluster(tmp_path, 1, extra_args=extra) as cluster:
        cluster.start()
        node = cluster.nodes[0]
        raft_harness.wait_for_coordinator(cluster, voters=1, timeout=30)
        me = node_id(node)

        out = cli(node, "task", "announce", "write docs", "--role", "docs", "--cap", "python",
                  "--scope", "docs/guide/*", "--priority", "5", "--deadline", "600")
        assert out.returncode == 0, out.stderr
        task_id = out.stdout.strip()
        assert task_id and "\n" not in task_id
        shown = json.loads(cli(node, "task", "show", task_id, "--json").stdout)
        assert shown["id"] == task_id and shown["state"] == "announced"
        assert shown["owner"] is None and shown["address"].startswith("ucxl://")

        claimed = cli(node, "task", "claim", task_id)
        assert claimed.returncode == 0, claimed.stderr
        assert claimed.stdout.strip() == me
        assert cli(node, "task", "claim", task_id).returncode == 0  # still ours
        assert cli(node, "task", "progress", task_id, "half way").returncode == 0
        result = tmp_path / "result.txt"
        result.write_bytes(b"the guide, written")
        done = cli(node, "task", "complete", task_id, "--result", str(result))
        assert done.returncode == 0, done.stderr
        shown = json.loads(cli(node, "task", "show", task_id, "--json").stdout)
        assert shown["state"] == "completed" and shown["owner"] == me
        assert [h["event"] for h in shown["history"]] == ["announced", "claimed", "progress",
                                                         "complete"]
        got = subprocess.run([sys.executable, "-m", "bzzz_edge", "ucxl", "get", shown["result"],
                              "--api", node.api], capture_output=True, timeout=30)
        assert got.returncode == 0 and got.stdout == b"the guide, written", got.stderr

        finished = cli(node, "task", "claim", task_id)
        assert finished.returncode == 2 and "finished" in finished.stderr

        frontend = cli(node, "task", "announce", "css", "--role", "frontend").stdout.strip()
        refused = cli(node, "task", "claim", frontend)
        assert refused.returncode == 2 and "role" in refused.stderr
        needs_gpu = cli(node, "task", "announce", "train", "--cap", "gpu").stdout.strip()
        assert "capabilities" in cli(node, "task", "claim", needs_gpu).stderr
        outside = cli(node, "task", "announce", "ops", "--role", "backend", "--scope",
                      "deploy/k8s.yml").stdout.strip()
        assert "scope" in cli(node, "task", "claim", outside).stderr
        unknown = cli(node, "task", "claim", "no-such-task")
        assert unknown.returncode == 2 and "unknown_task" in unknown.stderr

        plain = [cli(node, "task", "announce", f"plain {i}").stdout.strip() for i in range(3)]
        assert cli(node, "task", "claim", plain[0]).returncode == 0
        assert cli(node, "task", "claim", plain[1]).returncode == 0
        full = cli(node, "task", "claim", plain[2])
        assert full.returncode == 2 and "capacity" in full.stderr
        assert cli(node, "task", "release", plain[1]).returncode == 0
        assert cli(node, "task", "fail", plain[0], "no time").returncode == 0
        assert cli(node, "task", "claim", plain[2]).returncode == 0
        # Announced over gossip and never claimed: not in the log, kept in the store anyway.
        waiting = cli(node, "task", "announce", "nobody claims this").stdout.strip()

        status, answer = api(node, "POST", "/api/v1/tasks", {"title": "x" * 201})
        assert status == 422 and answer["reason"] == "too_long"
        status, answer = api(node, "POST", "/api/v1/tasks", {"title": "t", "address": "nope"})
        assert status == 400 and "address" in answer["error"]
        status, answer = api(node, "POST", "/api/v1/tasks", {"priority": 1})
        assert status == 400
        status, answer = api(node, "GET", "/api/v1/tasks/nope")
        assert status == 404 and answer["path"] == "/api/v1/tasks/nope"
        status, listing = api(node, "GET", "/api/v1/tasks?state=reassigned")
        assert status == 200 and [t["id"] for t in listing["tasks"]] == [plain[1]]
        listing = json.loads(cli(node, "task", "list", "--json").stdout)
        assert listing[0]["id"] == task_id  # priority 5 first
        counters = api(node, "GET", "/api/v1/tasks")[1]["counters"]
        assert counters["refused_too_long"] == 1 and counters["refused_role"] == 1
        with urllib.request.urlopen(node.api + "/metrics", timeout=30) as response:
            metrics = response.read().decode()
        assert 'bzzz_edge_task_events_total{event="refused_too_long"} 1.0' in metrics
        assert 'bzzz_edge_task_events_total{event="refused_stale"} 0.0' in metrics
        text = cli(node, "task", "show", task_id).stdout
        assert "completed" in text and me in text and "half way" in text
        text = cli(node, "task", "list", "--state", "reassigned").stdout
        assert plain[1] in text and task_id not in text

        before = {t["id"]: (t["state"], t["owner"]) for t in listing}
        assert before[waiting] == ("announced", None)
        # Announced just before the stop: saved, and recorded in the log, by the stop itself.
        last = cli(node, "task", "announce", "just before the stop").stdout.strip()
        before[last] = ("announced", None)
        assert cluster.stop() == [0]
        # The signed log records the changes with the task state's saves (up to a second
        # after each); a clean stop saves the rest and appends them before the store closes.
        # Read from the data dir, as `log show` and `log verify` do with no node running.
        shown = subprocess.run([sys.executable, "-m", "bzzz_edge", "log", "show", "--json",
                                "--limit", "1000", "--data-dir", str(node.data_dir)],
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        types = [e["type"] for e in json.loads(shown.stdout)["entries"]]
        assert {"task_announced", "task_claimed", "task_completed", "task_released",
                "task_failed"} <= set(types), types
        announced = [e["data"]["id"] for e in json.loads(shown.stdout)["entries"]
                     if e["type"] == "task_announced"]
        assert announced.count(last) == 1, announced
        verified = subprocess.run([sys.executable, "-m", "bzzz_edge", "log", "verify",
                                   "--data-dir", str(node.data_dir)],
                                  capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0, verified.stderr
        assert _log_pending(node) == 0  # nothing left for the next start
        cluster.start_node(node)
        raft_harness.wait_for_coordinator(cluster, voters=1, timeout=30)
        after = json.loads(cli(node, "task", "list", "--json").stdout)
        assert {t["id"]: (t["state"], t["owner"]) for t in after} == before
        again = cli(node, "task", "announce", "after restart").stdout.strip()
        assert cli(node, "task", "claim", plain[2]).stdout.strip() == me  # still ours
        assert cli(node, "task", "claim", again).returncode == 0  # holds 2 now, capacity 2
        refused = cli(node, "task", "claim", plain[1])
        assert refused.returncode == 2 and "capacity" in refused.stderr
