"""The namespace harness itself: hosts reach each other, and nothing outlives a Lan."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
print("listening", flush=True)
data, peer = s.recvfrom(100)
s.sendto(data.upper() + f" from {peer[0]}".encode(), peer)
"""

UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello", (sys.argv[1], 9999))
print(s.recvfrom(100)[0].decode())
"""


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_hosts_on_a_lan_reach_each_other_by_their_addresses(netns_hosts):
    a, b = netns_hosts(2)
    assert (a.ip, b.ip) == ("10.77.0.1", "10.77.0.2")
    server = a.popen([sys.executable, "-c", UDP_ECHO, a.ip], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline() == "listening\n"
    answer = b.run([sys.executable, "-c", UDP_ASK, a.ip], capture_output=True, text=True)
    assert answer.stdout == f"HELLO from {b.ip}\n"
    assert server.wait(5) == 0


def test_test_process_reaches_a_server_on_a_hosts_own_loopback(netns_hosts):
    (host,) = netns_hosts(1)
    server = host.popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1",
                         "--directory", str(Path(__file__).parent), "8765"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout.readline().startswith("Serving HTTP on 127.0.0.1 port 8765")
    connection = host.http_connection(8765)
    connection.request("GET", "/" + Path(__file__).name)
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == Path(__file__).read_bytes()
    connection.close()


def test_host_namespace_sees_only_its_own_interfaces(netns_hosts):
    (host,) = netns_hosts(1)
    links = host.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()) == [
        "eth0", "lo"]


def test_close_kills_processes_and_deletes_every_namespace_even_after_a_failure(netns_harness):
    harness = netns_harness
    with pytest.raises(ZeroDivisionError), harness.Lan() as lan:
        hosts = lan.add_hosts(2)
        sleeper = hosts[0].popen(["sleep", "600"])
        created = {lan.switch, *(host.name for host in hosts)}
        assert created <= namespaces()
        1 / 0  # noqa: B018
    assert sleeper.poll() is not None
    assert not created & namespaces()


def test_namespaces_left_by_a_dead_run_are_reaped_and_live_runs_spared(netns_harness):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"bzt{dead.pid}x000000-h1", f"bzt{os.getpid()}x000000-h1"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with netns_harness.Lan():
            assert stale not in namespaces()
            assert live in namespaces()
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
