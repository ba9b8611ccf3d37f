"""Nodes on three hosts (network namespaces on one bridge) find each other with mDNS alone."""

from __future__ import annotations

import json
import signal

import pytest

from bzzz_edge.identity import Identity

pytestmark = pytest.mark.slow


def _wait_for_event(node, event: str, timeout: float, **fields: str) -> None:
    """Wait for a structured log event (the ``event`` field of the node's JSON log lines)
    carrying ``fields``, rather than for the wording of a message."""
    wanted = {"event": event, **fields}

    def found() -> bool:
        for line in node.lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and all(entry.get(k) == v for k, v in wanted.items()):
                return True
        return False

    with node._cond:
        if not node._cond.wait_for(found, timeout):
            raise AssertionError(f"no {wanted}:\n" + "\n".join(node.lines))


def test_three_hosts_discover_each_other_and_form_a_mesh(netns_hosts, spawn_node, one_network):
    hosts = netns_hosts(3)
    data_dirs = one_network([host.name for host in hosts])
    short_ids = [Identity.load(d / "identity.key").display_id[:15] for d in data_dirs]
    # No bootstrap peers: mDNS inside the namespaces is the only way to meet.
    nodes = [spawn_node(data_dir, "--listen", "0.0.0.0:0", "--set", "network.mdns=true",
                        prefix=host.command([]))
             for host, data_dir in zip(hosts, data_dirs, strict=True)]
    for node in nodes:
        node.wait_ready()
    for me, node in enumerate(nodes):
        for other, short in enumerate(short_ids):
            if other != me:
                _wait_for_event(node, "member_status", 15, peer=short, status="alive")
                _wait_for_event(node, "peer_connected", 15, peer=short)
    for node in nodes:
        node.signal(signal.SIGTERM)
    assert [node.wait_exit() for node in nodes] == [0, 0, 0]
