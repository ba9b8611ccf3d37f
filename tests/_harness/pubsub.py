"""Helpers for the pub/sub tests and benchmarks on real node processes: event streams,
publishing, topic counters, clusters (full mesh or sparse).

Does I/O: starts ``bzzz-edge run`` processes on loopback (``bzzz_edge.cluster``), reads their
Server-Sent Events streams in threads and publishes over their HTTP API. Waits are on events (a
line of a stream) or on a node's state, read until it holds or a timeout passes.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bzzz_edge.cluster import ClusterNode, LocalCluster


def topic_path(topic: str, suffix: str) -> str:
    return f"/api/v1/topics/{urllib.parse.quote(topic, safe='')}/{suffix}"


class EventStream:
    """A node's event stream of one topic, read by a thread; ``got`` holds the deliveries."""

    def __init__(self, api: str, topic: str, timeout: float = 10.0) -> None:
        url = urllib.parse.urlsplit(api)
        self.topic = topic
        self.got: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        self._conn.request("GET", topic_path(topic, "events"))
        self._response = self._conn.getresponse()
        assert self._response.status == 200, self._response.read()
        first = self._response.readline()
        assert first.startswith(b": subscribed"), first  # subscribed before this returns
        self._conn.sock.settimeout(None)
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        data: list[str] = []
        try:
            for raw in self._response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    with self._cond:
                        self.got.append(json.loads("\n".join(data)))
                        self._cond.notify_all()
                    data = []
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed under us (AttributeError: http.client's own race on close)
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until ``count`` deliveries arrived; returns all so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.got) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended:
                    raise AssertionError(f"{len(self.got)} of {count} deliveries on "
                                         f"{self.topic} within {timeout:g}s")
                self._cond.wait(remaining)
            return list(self.got)

    def wait_for_data(self, data: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until a delivery with ``data`` arrived; returns all so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(d["data"] == data for d in self.got):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended:
                    raise AssertionError(f"no {data!r} on {self.topic} within {timeout:g}s; "
                                         f"got {[d['data'] for d in self.got][-10:]}")
                self._cond.wait(remaining)
            return list(self.got)

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)
        self._conn.close()


def api_call(api: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(api + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def publish(api: str, topic: str, data: bytes | str) -> dict[str, Any]:
    raw = data.encode() if isinstance(data, str) else data
    status, body = api_call(api, "POST", topic_path(topic, "messages"),
                            {"data_b64": base64.b64encode(raw).decode()})
    assert status == 200, body
    return body


def topics(api: str) -> dict[str, dict[str, Any]]:
    status, body = api_call(api, "GET", "/api/v1/topics")
    assert status == 200, body
    return {row["topic"]: row for row in body["topics"]}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Re-read a node's state until ``condition`` holds (between reads, 20 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.02)


def start_cluster(base: Path, size: int, *, sparse: bool, extra: list[str] | None = None
                  ) -> LocalCluster:
    """``size`` nodes on the ``local`` profile; full mesh (all bootstrap to node 0, started at
    once after it; wait for the mesh), or sparse (node i bootstraps to node i-1 only; no wait
    for more)."""
    cluster = LocalCluster(base, size, extra_args=["--set", "node.profile=local",
                                                   *(extra or [])])
    if not sparse:
        sys.modules["_bzzz_test_harness_local_cluster"].start_all(cluster)  # via tests/conftest
        cluster.wait_for_mesh(timeout=30)
        return cluster
    cluster.start_node(cluster.nodes[0])
    for previous, node in zip(cluster.nodes, cluster.nodes[1:], strict=False):
        cluster.start_node(node, seed=previous)
    return cluster


def wait_subscribed(nodes: list[ClusterNode], topic: str, peers: int,
                    timeout: float = 20.0) -> None:
    """Until every node in ``nodes`` knows at least ``peers`` peers subscribed to ``topic``."""
    for node in nodes:
        wait_until(lambda n=node: topics(n.api).get(topic, {}).get("subscribed_peers", 0)
                   >= peers, f"node{node.index} sees {peers} subscribers of {topic}", timeout)


def open_streams() -> tuple[Callable[[str, str], EventStream], Callable[[], None]]:
    """``(open, close_all)``: open event streams, and close every one opened."""
    opened: list[EventStream] = []

    def open_stream(api: str, topic: str) -> EventStream:
        stream = EventStream(api, topic)
        opened.append(stream)
        return stream

    def close_all() -> None:
        for stream in opened:
            stream.close()

    return open_stream, close_all
