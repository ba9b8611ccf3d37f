"""``bzzz-edge pub`` and ``bzzz-edge sub`` as a user runs them, against a real 3-node cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from bzzz_edge.cluster import LocalCluster
from bzzz_edge.gossip.topics import issue_topic

pytestmark = [pytest.mark.slow, pytest.mark.pure_nodes]

local_cluster = sys.modules["_bzzz_test_harness_local_cluster"]  # tests/_harness, via conftest

_ENV = {k: v for k, v in os.environ.items() if not k.startswith("BZZZ_EDGE_")
        or k in ("BZZZ_EDGE_PURE", "BZZZ_EDGE_REQUIRE_NATIVE")}


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bzzz_edge", *args], capture_output=True,
                          text=True, timeout=timeout, env=_ENV)


class _Sub:
    """``bzzz-edge sub`` in the background; ``wait_subscribed`` reads its stderr notice."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bzzz_edge", "sub", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=_ENV)
        self.subscribed = threading.Event()
        self.errors: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)
            if "subscribed to" in line:
                self.subscribed.set()

    def wait_subscribed(self) -> None:
        assert self.subscribed.wait(20), self.errors

    def finish(self, timeout: float = 30) -> tuple[int, list[str]]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.splitlines()


def test_pub_and_sub_as_a_user_runs_them(tmp_path, ps):
    topic = issue_topic(11)
    with LocalCluster(tmp_path, 3, extra_args=["--set", "node.profile=local",
                                               "--set", "gossip.max_message_size=2048"]) as net:
        local_cluster.start_all(net)
        net.wait_for_mesh(timeout=20)
        publisher, subscriber = net.nodes[0], net.nodes[2]
        sub = _Sub(topic, "--json", "--count", "2", "--api", subscriber.api)
        sub.wait_subscribed()
        ps.wait_subscribed([publisher], topic, 1)
        first = _cli("pub", topic, "who takes issue 11?", "--api", publisher.api)
        assert first.returncode == 0, first.stderr
        blob = tmp_path / "blob.bin"
        blob.write_bytes(b"\xff\x00binary")
        second = _cli("pub", topic, "--file", str(blob), "--data-dir", str(publisher.data_dir))
        assert second.returncode == 0, second.stderr
        code, lines = sub.finish()
        assert code == 0, sub.errors
        got = [json.loads(line) for line in lines]
        origin = _cli("id", "--data-dir", str(publisher.data_dir)).stdout.strip()
        assert [f"{d['origin']}:{d['seq']}" for d in got] == \
            [first.stdout.strip(), second.stdout.strip()]
        assert got[0]["origin"] == origin and got[0]["topic"] == topic
        assert (got[0]["data"], got[0]["hops"]) == ("who takes issue 11?", 1)
        assert got[1]["data"] is None and got[1]["data_b64"] == "/wBiaW5hcnk="
        assert got[1]["seq"] == got[0]["seq"] + 1 and got[0]["timestamp"] > 1.7e9

        too_large = _cli("pub", topic, "x" * 4096, "--api", publisher.api)
        assert too_large.returncode == 2
        assert too_large.stderr.count("\n") == 1 and "exceeds the maximum" in too_large.stderr
        bad_topic = _cli("pub", "no spaces please", "hi", "--api", publisher.api)
        assert bad_topic.returncode == 2 and bad_topic.stderr.count("\n") == 1
        assert "not allowed" in bad_topic.stderr

        # HTTP as scripts use it: JSON text, percent-encoding, clear refusals.
        status, body = ps.api_call(publisher.api, "POST", ps.topic_path(topic, "messages"),
                                   {"data": "as JSON"})
        assert status == 200 and body["topic"] == topic and body["seq"] == got[1]["seq"] + 1
        status, body = ps.api_call(publisher.api, "POST", ps.topic_path(topic, "messages"),
                                   {"text": "wrong field"})
        assert status == 400 and "data_b64" in body["error"]
        status, body = ps.api_call(publisher.api, "POST", ps.topic_path(topic, "messages"),
                                   {"data": "y" * 3000})
        assert status == 413 and "gossip.max_message_size" in body["error"]
        status, body = ps.api_call(publisher.api, "GET", "/api/v1/topics/a%20b/events")
        assert status == 400 and "not allowed" in body["error"]

        quiet = _cli("sub", issue_topic(12), "--timeout", "0.5", "--count", "1",
                     "--api", subscriber.api)
        assert quiet.returncode == 1 and "0 message(s)" in quiet.stderr
