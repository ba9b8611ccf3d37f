"""Driving coordination on a local cluster of real node processes: for tests and benchmarks.
Does I/O (HTTP to the nodes' APIs, threads).

``wait_for_coordinator`` waits until every running node names the same coordinator and it has
the wanted number of voters (between polls it waits for a node to log something new, as
``LocalCluster.wait_for_mesh`` does: every role or configuration change is logged).
``Proposer`` threads send a stream of unique commands to the running nodes (any of them: the
node forwards to the coordinator) and record each outcome; ``check_logs`` fetches every
running node's committed log and checks it against what was acknowledged.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bzzz_edge.cluster import ClusterNode, LocalCluster
from bzzz_edge.errors import BzzzError


def coordination(node: ClusterNode) -> dict[str, Any]:
    return node.get("/api/v1/coordination")  # type: ignore[no-any-return]


def wait_for_coordinator(cluster: LocalCluster, *, voters: int, timeout: float,
                         not_this: str | None = None) -> dict[str, Any]:
    """Wait until every running node follows one coordinator (other than ``not_this``) whose
    configuration has ``voters`` voters; returns the coordinator's status."""
    began = time.monotonic()
    while True:
        running = [n for n in cluster.nodes if n.running]
        states = {n.index: coordination(n) for n in running}
        leaders = {s["leader"] for s in states.values()}
        leader = next(iter(leaders)) if len(leaders) == 1 else None
        top = next((s for s in states.values() if s["is_leader"]), None)
        if leader is not None and leader != not_this and top is not None and \
                len(top["voters"]) == voters and \
                {n.short_id for n in running} <= {m[:15] for m in top["voters"] + top["learners"]}:
            return top
        remaining = timeout - (time.monotonic() - began)
        if remaining <= 0:
            raise BzzzError(f"no coordinator with {voters} voters within {timeout:g}s: {states}")
        running[0].wait_for_new_log(timeout=min(remaining, 0.5))


def post(node: ClusterNode, path: str, body: dict[str, Any]) -> Any:
    """POST JSON to a node's API; its JSON answer (raises on an HTTP error)."""
    request = urllib.request.Request(node.api + path, data=json.dumps(body).encode(),
                                     method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def node_of(cluster: LocalCluster, display_id: str) -> ClusterNode:
    return next(n for n in cluster.nodes if n.short_id == display_id[:15])


def propose(node: ClusterNode, data: str, *, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """POST a proposal; (HTTP status, answer). Status 0: the node did not answer."""
    host, port = node.api.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout + 5)
    try:
        conn.request("POST", "/api/v1/coordination/propose",
                     json.dumps({"data": data, "timeout": timeout}),
                     {"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    except OSError as exc:
        return 0, {"error": str(exc)}
    finally:
        conn.close()


@dataclass
class Proposer:
    """Threads proposing unique commands to the running nodes, round robin, until stopped."""

    cluster: LocalCluster
    threads: int = 4
    acked: dict[str, int] = field(default_factory=dict)  # command -> committed index
    outcomes: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: Any = field(default_factory=lambda: itertools.count())
    _workers: list[threading.Thread] = field(default_factory=list)
    _progress: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        for number in range(self.threads):
            worker = threading.Thread(target=self._run, args=(number,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def _run(self, number: int) -> None:
        turn = number
        while not self._stop.is_set():
            running = [n for n in self.cluster.nodes if n.running]
            if not running:
                return
            node = running[turn % len(running)]
            turn += 1
            command = f"cmd-{next(self._counter)}"
            status, answer = propose(node, command)
            with self._progress:
                if status == 200:
                    self.acked[command] = answer["index"]
                    self.outcomes["ok"] += 1
                else:
                    self.outcomes[str(answer.get("reason", status))] += 1
                self._progress.notify_all()

    def wait_acked(self, count: int, timeout: float) -> None:
        """Wait until ``count`` proposals in all were acknowledged."""
        with self._progress:
            if not self._progress.wait_for(lambda: len(self.acked) >= count, timeout):
                raise BzzzError(f"only {len(self.acked)} of {count} proposals acknowledged "
                                f"within {timeout:g}s: {dict(self.outcomes)}")

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)


def wait_for_commit(node: ClusterNode, index: int, *, timeout: float) -> None:
    """Wait until ``node`` applied ``index`` (knows it committed, and holds its entries: what
    the committed log it serves goes up to)."""
    deadline = time.monotonic() + timeout
    while coordination(node)["applied_index"] < index:
        if time.monotonic() > deadline:
            raise BzzzError(f"node{node.index} did not learn commit {index} in {timeout:g}s")
        node.wait_for_new_log(timeout=0.05)


def committed_log(node: ClusterNode) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    start = 1
    while True:
        batch = node.get(f"/api/v1/coordination/log?start={start}&limit=10000")["entries"]
        entries += batch
        if len(batch) < 10000:
            return entries
        start = batch[-1]["index"] + 1


def check_logs(cluster: LocalCluster, acked: dict[str, int]) -> dict[int, list[str]]:
    """Every running node's committed commands; raises AssertionError when an acknowledged
    command is missing or elsewhere than acknowledged, a command is there twice, or two nodes
    disagree on an index."""
    logs: dict[int, dict[int, tuple[int, str]]] = {}
    for node in cluster.nodes:
        if not node.running:
            continue
        wait_for_commit(node, max(acked.values(), default=0), timeout=30)
        entries = committed_log(node)
        logs[node.index] = {e["index"]: (e["term"], e["data"]) for e in entries}
        commands = [bytes.fromhex(e["data"]).decode() for e in entries if e["kind"] == "command"]
        twice = [c for c, n in Counter(commands).items() if n > 1]
        assert not twice, f"node{node.index} applied {twice[:5]} twice"
        at = {bytes.fromhex(e["data"]).decode(): e["index"] for e in entries
              if e["kind"] == "command"}
        lost = {c: (i, at.get(c)) for c, i in acked.items() if at.get(c) != i}
        near = [(i, logs[node.index][i]) for i in sorted(logs[node.index])
                if any(abs(i - w[0]) < 3 for w in lost.values())]
        assert not lost, (f"node{node.index} lacks acknowledged (command, acknowledged at, "
                          f"found at) {[(c, *w) for c, w in lost.items()][:5]}; its log "
                          f"there: {near[:12]}")
    first = next(iter(logs.values()))
    for index, log in logs.items():
        for at in set(log) & set(first):
            assert log[at] == first[at], f"node{index} disagrees at {at}"
    return {i: [v[1] for _, v in sorted(log.items())] for i, log in logs.items()}
