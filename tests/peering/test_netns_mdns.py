"""Nodes on three hosts (network namespaces on one bridge) find each other with mDNS alone."""

from __future__ import annotations

import signal

import pytest

from bzzz_edge.identity import Identity

pytestmark = pytest.mark.slow


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
                node.wait_for_log(rf"^peer {short} \S+ -> alive", timeout=15)
                node.wait_for_log(rf"^connected to {short} ", timeout=15)
    for node in nodes:
        node.signal(signal.SIGTERM)
    assert [node.wait_exit() for node in nodes] == [0, 0, 0]
