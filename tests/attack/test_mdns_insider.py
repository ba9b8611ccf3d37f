"""Issue 8's attack 6 through mDNS: an insider on the LAN announces fake nodes with the network's
public fingerprint. Three hosts in network namespaces: the victim, an honest node, the attacker.

The victim must dial no more than a few of one announcer's addresses, and stop dialling them
once they are withdrawn (goodbye packets); meanwhile it stays healthy and the honest nodes hold
each other alive.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bzzz_edge.identity import Identity, load_network_key, network_fingerprint

pytestmark = pytest.mark.slow

#: Addresses one announcer may put in a node's dial book.
DIAL_BOOK_PER_SOURCE = 4  # wire.constants.DIAL_MDNS_PER_HOST
#: /metrics counters, any of which shows that the victim refused some of the fakes.
COUNTED = ("want_refused",)
ATTACKER = Path(__file__).resolve().parent / "mdns_attacker.py"
FAKES = 64


def _get(host, api: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` from a node's API, which listens on its namespace's loopback."""
    port = int(api.rsplit(":", 1)[1])
    connection = host.http_connection(port)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _start_pair(tmp_path, hosts, spawn_node, one_network):
    """Init and start a node in each of ``hosts`` (one network key), mDNS on; wait for the mesh."""
    key_file = tmp_path / "network.key"
    nodes, short_ids = [], []
    for host, data_dir in zip(hosts, one_network([h.name for h in hosts]), strict=True):
        short_ids.append(Identity.load(data_dir / "identity.key").display_id[:15])
        # The dial book holds max_connections addresses; 32 instead of 256 makes the attack
        # 8x cheaper without changing it.
        nodes.append(spawn_node(data_dir, "--listen", "0.0.0.0:0", "--set", "network.mdns=true",
                                "--set", "network.max_connections=32", prefix=host.command([])))
    for node in nodes:
        node.wait_ready()
    for node, other in ((nodes[0], short_ids[1]), (nodes[1], short_ids[0])):
        node.wait_for_log(rf"^peer {other} \S+ -> alive", timeout=15)
        node.wait_for_log(rf"^connected to {other} ", timeout=15)
    return nodes, short_ids, load_network_key(key_file)


def test_fake_mdns_services_cannot_fill_the_dial_book(tmp_path, netns_hosts, spawn_node,
                                                     one_network):
    netns = sys.modules["_bzzz_test_harness_netns"]
    hosts = netns_hosts(3)
    (victim, honest), short_ids, key = _start_pair(tmp_path, hosts[:2], spawn_node, one_network)
    marks = [len(victim.lines), len(honest.lines)]
    attacker = hosts[2].popen(
        [sys.executable, str(ATTACKER), "--fingerprint", network_fingerprint(key),
         "--ip", hosts[2].ip, "--count", str(FAKES)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert attacker.stdin is not None and attacker.stdout is not None
    events = netns.LineReader(attacker.stdout, "attacker")
    events.wait_for(lambda e: e["event"] == "registered", timeout=20)
    dialled: set[int] = set()

    def victim_dialled_more_than(count: int):
        def check(event: dict) -> bool:
            if event["event"] == "dial" and event["source"] == hosts[0].ip:
                dialled.add(event["port"])
            return len(dialled) > count
        return check

    # The victim acts on the fakes (dials one), then gets a window to dial past the cap.
    events.wait_for(victim_dialled_more_than(0), timeout=15, what="a dial from the victim")
    with contextlib.suppress(AssertionError):  # it kept within the cap
        events.wait_for(victim_dialled_more_than(DIAL_BOOK_PER_SOURCE), timeout=3)
    assert len(dialled) <= DIAL_BOOK_PER_SOURCE, f"{len(dialled)} fake addresses dialled"

    attacker.stdin.write("leave\n")
    attacker.stdin.flush()
    left = events.wait_for(lambda e: e["event"] == "left", timeout=20)["t"]
    # Goodbyes reach the victim at once. A negative needs a window: watch 3 s, and allow the
    # first second for dials already under way.
    with contextlib.suppress(AssertionError):
        events.wait_for(lambda e: False, timeout=3)
    late = [e for e in events.items if e["event"] == "dial" and e["source"] == hosts[0].ip
            and e["t"] > left + 1]
    assert late == [], f"the victim dialled withdrawn fakes {len(late)} times"

    status, _ = _get(hosts[0], victim.api, "/health/ready")
    assert victim.proc.poll() is None and status == 200
    _, body = _get(hosts[0], victim.api, "/metrics")
    counted = sum(float(v) for name, v in re.findall(
        r'^bzzz_edge_net_events_total\{event="([^"]+)"\} (\S+)$', body.decode(), re.M)
        if name in COUNTED)
    assert counted > 0
    for node, host, other in ((victim, hosts[0], short_ids[1]), (honest, hosts[1], short_ids[0])):
        _, body = _get(host, node.api, "/api/v1/peers")
        row = next(p for p in json.loads(body)["peers"] if p["node_id"][:15] == other)
        assert row["status"] == "alive" and row["connected"], row
    for node, mark, other in ((victim, marks[0], short_ids[1]), (honest, marks[1], short_ids[0])):
        assert not [m for m in node.messages()[mark:]
                    if re.search(rf"^peer {other} \S+ -> dead", m)]
    attacker.stdin.close()
    attacker.wait(10)
