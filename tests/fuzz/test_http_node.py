"""Fuzzed HTTP requests, raw bytes on a socket, against a real node process."""

from __future__ import annotations

import json
import urllib.request

import pytest
from bzzz_fuzz.http import TARGETS, TOKEN
from bzzz_fuzz.http_node import exchange, fuzz_node

pytestmark = [pytest.mark.slow, pytest.mark.lone_node]


def test_node_api_survives_fuzzed_requests_and_stays_healthy(initialised_node, spawn_node):
    node = spawn_node(initialised_node, "--set", f"api.token={TOKEN}")
    api = node.wait_ready()
    report = fuzz_node(api, inputs=250, seed=20261206, seeds=TARGETS[0].seeds())
    assert not report.findings, "\n".join(
        [f"{f.error}\n{f.data[:300]!r}" for f in report.findings] + ["node log:", *node.lines])
    assert node.proc.poll() is None, "the node exited"
    request = urllib.request.Request(f"{api}/health",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["status"] in ("ok", "degraded")
    logged = "\n".join(node.lines)
    assert "Traceback" not in logged and '"level": "ERROR"' not in logged, logged[-3000:]


def test_bytes_pipelined_after_a_closing_request_neither_stop_nor_spam_the_node(
        initialised_node, spawn_node):
    # Found by the test above: hypercorn 0.18 answered the pipelined garbage with a 400 while it
    # half-closed the socket from another task; trio's BusyResourceError escaped and the node
    # exited (or, from the app's side, logged a traceback), for one unauthenticated request.
    node = spawn_node(initialised_node)  # no token: the request needs none
    api = node.wait_ready()
    host, port = api.removeprefix("http://").rsplit(":", 1)
    raw = (b"GET /api/v1/node HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
           b"1\r\n!#: \r\n: \r\ncontent-length: 0\r\n\r\n")
    for _ in range(30):
        exchange(host, int(port), raw)
    assert node.proc.poll() is None, "\n".join(node.lines)
    with urllib.request.urlopen(f"{api}/health/live", timeout=10) as response:
        assert response.status == 200
    assert not [line for line in node.lines if "Traceback" in line], "\n".join(node.lines)
