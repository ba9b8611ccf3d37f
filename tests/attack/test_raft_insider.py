"""Issue 14's bad input, sent by a real peer holding the network key to a real node: Raft
messages that are undecodable, of another group, of a stale term, oversized, malformed, or a
vote request meant to depose a working coordinator. Each is refused and counted; the node,
its coordinator and its term are unharmed."""

from __future__ import annotations

import json
import re
import secrets
import sys
import urllib.request

import msgpack
import pytest

pytestmark = pytest.mark.slow

_RAFT = ("raft", 1)
_COUNTER = re.compile(r'^bzzz_edge_coordination_events_total\{event="([^"]+)"\} (\S+)$', re.M)


insider = sys.modules["_bzzz_test_harness_insider"]  # tests/_harness/insider.py, via conftest


def _counters(node) -> dict[str, float]:
    with urllib.request.urlopen(node.api + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in _COUNTER.findall(text)}


def _status(node) -> dict:
    with urllib.request.urlopen(node.api + "/api/v1/coordination", timeout=10) as response:
        return json.loads(response.read())


def test_bad_raft_messages_are_refused_and_counted(mesh):
    victim = mesh.victim
    assert mesh.poll_until(lambda: _status(victim)["leader"] is not None, 30)
    before, status = _counters(victim), _status(victim)
    group, term = bytes.fromhex(status["group"]), status["term"]
    spy = insider.Insider.connect(mesh.victim_address, mesh.network_key)
    spy.start_reader()
    assert spy.wait_joined()
    big = [[term, 1, 0, b"x" * 70_000]]  # one command over max_command_bytes (65536)
    bodies = [
        b"\xc1 not msgpack",  # undecodable envelope
        msgpack.packb([b"short", [7, term]]),  # no group ID
        msgpack.packb([secrets.token_bytes(40), [3, term + 9, 0, 0, 0, []]]),  # another group
        msgpack.packb([group, [3, 0, 0, 0, 0, []]]),  # AppendEntries of a stale term
        msgpack.packb([group, [3, term, 0, 0, 0, big]]),  # oversized entry
        msgpack.packb([group, [99, term]]),  # no such message kind
        msgpack.packb([group, [2, term, "yes", False]]),  # a field of the wrong type
        # A real vote request of a far higher term while the voters hear their coordinator:
        # refused (the lease), so the term stays put and nobody is deposed.
        msgpack.packb([group, [1, term + 100, 10**9, term + 100, False, False]]),
    ]
    for body in bodies:
        spy.send_direct(_RAFT, body)
    assert spy.barrier()

    def grew(name: str, by: float = 1) -> bool:
        return _counters(victim).get(name, 0) - before.get(name, 0) >= by

    assert mesh.poll_until(lambda: grew("malformed_envelopes", 2), 10)
    assert mesh.poll_until(lambda: grew("foreign_group"), 10)
    assert mesh.poll_until(lambda: grew("stale_term"), 10)
    assert mesh.poll_until(lambda: grew("malformed", 3), 10)
    after = _status(victim)
    assert after["term"] == term and after["leader"] == status["leader"]
    assert victim.running and _status(mesh.honest)["leader"] == status["leader"]
    spy.close()
