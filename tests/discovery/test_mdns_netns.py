"""Real mDNS between processes in network namespaces joined by a bridge (tests/_harness/netns.py).

Each host runs tests/_harness/mdns_probe.py, which drives MdnsDiscovery and prints what it finds
as JSON lines. Skipped, with the reason, where namespaces cannot be created.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest

from bzzz_edge.discovery import MdnsDiscovery
from bzzz_edge.errors import LocalProtocolError
from bzzz_edge.identity import network_fingerprint

FP = network_fingerprint(b"a" * 32)
OTHER_FP = network_fingerprint(b"b" * 32)
WAIT = 10.0

# A neighbour announcing our service type with a broken TXT record (an ID that is not hex).
MALFORMED_PUBLISHER = """
import sys
from zeroconf import ServiceInfo, Zeroconf
zc = Zeroconf(interfaces=[sys.argv[1]])
name = "broken._bzzz._tcp.local."
info = ServiceInfo("_bzzz._tcp.local.", name, port=7777, server="broken.local.",
                   properties={b"id": b"not-hex", b"v": b"1", b"net": sys.argv[2].encode()},
                   parsed_addresses=[sys.argv[1]])
zc.register_service(info, cooperating_responders=True)
print('{"event": "registered"}', flush=True)
sys.stdin.read()
zc.close()
"""


def collect_found(probe: Any, expected: dict[str, list[list[Any]]]) -> None:
    """Wait until ``probe`` has found exactly the peers in ``expected``, at those addresses."""
    got: dict[str, list[list[Any]]] = {}
    while got.keys() != expected.keys():
        item = probe.wait("found", WAIT)
        assert item["peer_id"] in expected, f"{probe.host.name} found a stranger: {item}"
        got[item["peer_id"]] = item["addresses"]
    assert got == expected


def test_hosts_find_each_other_and_skip_other_networks_and_garbage(netns_hosts, start_probe):
    hosts = netns_hosts(5)
    ours = [start_probe(host, FP, 7000 + host.index) for host in hosts[:3]]
    stranger = start_probe(hosts[3], OTHER_FP, 7004)
    garbage = hosts[4].popen([sys.executable, "-c", MALFORMED_PUBLISHER, hosts[4].ip, FP],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    ids = {probe.host.name: probe.wait("ready", WAIT)["node_id"] for probe in [*ours, stranger]}

    for probe in ours:
        collect_found(probe, {ids[other.host.name]: [[other.host.ip, other.port]]
                              for other in ours if other is not probe})
        # Evidence that the stranger's and the garbage service were resolved and turned away.
        probe.wait("stats", WAIT, lambda s: s["ignored_other_network"] == 1 and s["malformed"])
    stranger.wait("stats", WAIT, lambda s: s["ignored_other_network"] == 3 and s["malformed"])

    assert stranger.seen("found") == []
    for probe in ours:
        assert ids[stranger.host.name] not in {f["peer_id"] for f in probe.seen("found")}
        assert probe.seen("lost") == []
    assert garbage.poll() is None


def test_stopped_node_says_goodbye_and_peers_lose_it(netns_hosts, start_probe):
    hosts = netns_hosts(3)
    probes = [start_probe(host, FP, 7100 + host.index) for host in hosts]
    ids = [probe.wait("ready", WAIT)["node_id"] for probe in probes]
    for probe, own in zip(probes, ids, strict=True):
        collect_found(probe, {peer: [[other.host.ip, other.port]]
                              for other, peer in zip(probes, ids, strict=True) if peer != own})

    leaving = probes[0]
    leaving.proc.send_signal(signal.SIGTERM)
    for probe in probes[1:]:
        probe.wait("lost", WAIT, lambda item: item["peer_id"] == ids[0])
    leaving.wait("stopped", WAIT)
    assert leaving.proc.wait(WAIT) == 0
    assert [item["peer_id"] for item in probes[1].seen("lost")] == [ids[0]]


def test_two_processes_on_one_hosts_loopback_find_each_other(netns_hosts, start_probe):
    (host,) = netns_hosts(1)
    host.enable_loopback_multicast()
    probes = [start_probe(host, FP, port, "--interface", "127.0.0.1") for port in (7201, 7202)]
    ids = [probe.wait("ready", WAIT)["node_id"] for probe in probes]
    collect_found(probes[0], {ids[1]: [["127.0.0.1", 7202]]})
    collect_found(probes[1], {ids[0]: [["127.0.0.1", 7201]]})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"port": 0}, "port must be 1..65535"),
    ({"port": 70000}, "port must be 1..65535"),
    ({"interfaces": ["eth0"]}, "'eth0' in interfaces/advertise is not an IP address"),
    ({"advertise": ["10.0.0.300"]}, "'10.0.0.300' in interfaces/advertise"),
    ({"network_fingerprint": "has space"}, "network fingerprint must be"),
    ({"node_id": b"short"}, "node_id must be 32 bytes"),
])
def test_bad_arguments_are_refused_before_touching_the_network(kwargs, message):
    arguments = {"node_id": bytes(32), "port": 7000, "network_fingerprint": FP, **kwargs}
    with pytest.raises(LocalProtocolError, match=message):
        MdnsDiscovery(**arguments)
