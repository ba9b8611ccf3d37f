"""The benchmark's local cluster: N node processes started in parallel, waited on until they
form a full mesh under one coordinator; and what an idle node costs (psutil). Does I/O
(processes, HTTP, /proc).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import trio

from ..cluster import ClusterNode, LocalCluster
from ..errors import BzzzError

__all__ = ["Usage", "form_cluster", "idle_usage", "last_lines"]

_LAST_LINES = 8


def last_lines(node: ClusterNode, count: int = _LAST_LINES) -> str:
    """A node's last log lines, indented, for an error message."""
    try:
        lines = node.log_path.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        lines = node.messages[-count:]
    shown = "\n".join(f"    {line}" for line in lines) or "    (nothing logged)"
    return f"\n  node{node.index}'s last log lines ({node.log_path}):\n{shown}"


def _start_rest(cluster: LocalCluster, timeout: float) -> None:
    """Start every node but the first at once, each in a thread (they wait on their READY
    notification, not on each other)."""
    failures: dict[int, BzzzError] = {}

    def start(node: ClusterNode) -> None:
        try:
            cluster.start_node(node, timeout=timeout)
        except BzzzError as exc:
            failures[node.index] = exc

    threads = [threading.Thread(target=start, args=(node,), daemon=True)
               for node in cluster.nodes[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        index = min(failures)
        raise BzzzError(f"the cluster failed to form: {failures[index]}"
                        f"{last_lines(cluster.nodes[index])}")


def form_cluster(base: Path, size: int, *, timeout: float = 60.0,
                 extra_args: list[str] | None = None) -> LocalCluster:
    """Start ``size`` nodes under ``base`` and wait until every one sees every other alive and
    connected and all follow one coordinator that counts them all as members.

    Raises:
        BzzzError: a node did not start, or the cluster did not form in ``timeout`` seconds
            (naming the node and showing its last log lines); the nodes started are stopped.
    """
    cluster = LocalCluster(base, size, extra_args=extra_args)
    try:
        try:
            cluster.start_node(cluster.nodes[0], timeout=timeout)
        except BzzzError as exc:
            raise BzzzError(f"the cluster failed to form: {exc}"
                            f"{last_lines(cluster.nodes[0])}") from None
        _start_rest(cluster, timeout)
        began = time.monotonic()
        try:
            cluster.wait_for_mesh(timeout=timeout)
        except BzzzError as exc:
            lacking = _node_named(cluster, str(exc))
            raise BzzzError(f"the cluster failed to form: {exc}"
                            f"{last_lines(lacking) if lacking else ''}") from None
        _wait_for_coordinator(cluster, timeout - (time.monotonic() - began))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_named(cluster: LocalCluster, text: str) -> ClusterNode | None:
    return next((n for n in cluster.nodes if f"node{n.index} " in text + " "), None)


def _coordination(node: ClusterNode) -> dict[str, Any]:
    try:
        answer = node.get("/api/v1/coordination")
    except OSError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _wait_for_coordinator(cluster: LocalCluster, timeout: float) -> None:
    """Until every node follows one coordinator whose members are all the nodes."""
    deadline = time.monotonic() + max(timeout, 1.0)
    everyone = {n.short_id for n in cluster.nodes}
    while True:
        states = {n.index: _coordination(n) for n in cluster.nodes}
        leaders = {s.get("leader") for s in states.values()}
        top = next((s for s in states.values() if s.get("is_leader")), None)
        if len(leaders) == 1 and None not in leaders and top is not None and everyone <= {
                m[:15] for m in top.get("voters", []) + top.get("learners", [])}:
            return
        if time.monotonic() > deadline:
            lost = next((i for i, s in states.items() if not s.get("leader")), None)
            which = cluster.nodes[lost] if lost is not None else cluster.nodes[0]
            raise BzzzError(f"the cluster failed to form: no coordinator followed by all "
                            f"{len(cluster.nodes)} nodes within {timeout:g}s (node{which.index} "
                            f"follows {states[which.index].get('leader')}){last_lines(which)}")
        cluster.nodes[0].wait_for_new_log(timeout=0.2)


@dataclass(frozen=True, slots=True)
class Usage:
    """One node's cost while idle: percent of one core over the interval, resident MB (10^6
    bytes, the unit targets are given in)."""

    name: str
    pid: int
    cpu_percent: float
    rss_mb: float


async def idle_usage(pids: dict[str, int], seconds: float) -> list[Usage]:
    """CPU (percent of one core, averaged over ``seconds``) and RSS of each process.

    Raises:
        BzzzError: a process is gone, or not ours to read.
    """
    procs: dict[str, psutil.Process] = {}
    try:
        for name, pid in pids.items():
            procs[name] = psutil.Process(pid)
            procs[name].cpu_percent(None)
        await trio.sleep(seconds)
        return [Usage(name, p.pid, p.cpu_percent(None), p.memory_info().rss / 1e6)
                for name, p in procs.items()]
    except psutil.Error as exc:
        raise BzzzError(f"cannot read a node's CPU and memory: {exc}") from None
