"""A throw-away LAN of Linux network namespaces for tests and benchmarks. Does I/O (runs `ip`).

``Lan()`` creates a "switch" namespace holding a bridge; every ``add_host()`` creates a host
namespace whose ``eth0`` is a veth pair plugged into that bridge, with an address in
10.77.0.0/24, loopback up and a multicast route. Nothing is created in the caller's own
namespace, so no traffic can leave the LAN, and every name carries our pid plus a random tag,
so parallel runs never collide. ``close()`` kills what runs inside and deletes every namespace;
it also runs at interpreter exit, and namespaces left by a run that was killed outright are
reaped by the next ``Lan()``.

In pytest, load this file from a conftest (tests cannot import each other) and use the
``netns_hosts`` fixture::

    hosts = netns_hosts(3)            # three hosts on one LAN; call again to add more
    proc = hosts[0].popen([sys.executable, "-c", "..."], stdout=subprocess.PIPE, text=True)
    hosts[1].ip                        # "10.77.0.2"
    hosts[1].http_connection(8080)     # HTTP to 127.0.0.1:8080 *inside* that namespace

The test process itself stays outside the LAN (no address of ours is added to its namespace);
``Host.create_connection`` and ``Host.http_connection`` reach servers inside a namespace by
creating the socket from a thread that briefly enters it.

The fixture skips the test, with the reason, where namespaces cannot be made (not root, no
`ip`, no CAP_NET_ADMIN).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import pytest

__all__ = [
    "Host",
    "Lan",
    "LineReader",
    "NetnsUnavailable",
    "netns_hosts",
    "netns_lan",
    "unavailable_reason",
]

SUBNET = "10.77.0"
PREFIX_LEN = 24
MAX_HOSTS = 250
_NAME_PREFIX = "bzt"
_OURS = re.compile(rf"^{_NAME_PREFIX}(\d+)x[0-9a-f]+-(sw|h\d+)$")
_IP_TIMEOUT = 15.0
_unavailable: list[str | None] = []  # cached probe result


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here; the message says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def unavailable_reason() -> str | None:
    """Why namespaces cannot be created here, or None when they can (probed once)."""
    if not _unavailable:
        _unavailable.append(_probe())
    return _unavailable[0]


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux, this is {sys.platform}"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    name = f"{_NAME_PREFIX}{os.getpid()}x{secrets.token_hex(3)}-h0"
    result = _ip("netns", "add", name, check=False)
    if result.returncode != 0:
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()} (not root)"
        return (
            f"cannot create a network namespace as {who}, CAP_NET_ADMIN is needed: "
            f"{result.stderr.strip()}"
        )
    _ip("netns", "del", name, check=False)
    return None


def reap_stale() -> None:
    """Delete namespaces of ours whose creating process is gone (a run killed outright)."""
    listing = _ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _OURS.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_inside(name)
            _ip("netns", "del", name, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """SIGKILL whatever still runs in one of our namespaces (only what we started is there)."""
    pids = _ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class Host:
    """One namespace on the LAN: ``name`` (for `ip netns exec`), ``ip``, ``index`` (1-based)."""

    name: str
    ip: str
    index: int
    lan: Lan = field(repr=False)

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside this namespace (killed by ``Lan.close()`` if still running).

        ``ip netns exec`` execs the command in place, so ``.pid`` is the process itself.
        """
        proc: subprocess.Popen[Any] = subprocess.Popen(self.command(args), **kwargs)
        self.lan.processes.append(proc)
        return proc

    def enable_loopback_multicast(self) -> None:
        """Let multicast flow on this namespace's loopback (lo has no MULTICAST flag by default),
        so processes bound to 127.0.0.1 alone can use mDNS with each other."""
        _ip("-n", self.name, "link", "set", "lo", "multicast", "on")
        _ip("-n", self.name, "route", "add", "224.0.0.0/4", "dev", "lo", "metric", "10")

    def run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run a command inside this namespace to completion (``subprocess.run`` arguments)."""
        kwargs.setdefault("timeout", _IP_TIMEOUT)
        return subprocess.run(self.command(args), check=kwargs.pop("check", True), **kwargs)

    def create_connection(self, address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        """A TCP connection made from inside this namespace, usable from the caller's thread.

        E.g. ``host.create_connection(("127.0.0.1", api_port))`` reaches a server that listens
        on the namespace's own loopback, which nothing outside the namespace can otherwise see.
        """
        return _in_namespace(self.name, lambda: socket.create_connection(address, timeout))

    def http_connection(self, port: int, address: str = "127.0.0.1",
                        timeout: float = 5.0) -> http.client.HTTPConnection:
        """An ``http.client.HTTPConnection`` to ``address:port`` as seen inside this namespace."""
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
        # http.client dials through this hook; ours dials from inside the namespace.
        connection._create_connection = (  # type: ignore[attr-defined]
            lambda addr, conn_timeout, source=None: self.create_connection(addr, conn_timeout))
        return connection


_CLONE_NEWNET = 0x40000000


def _in_namespace(namespace: str, make: Callable[[], socket.socket]) -> socket.socket:
    """Run ``make`` in a short-lived thread moved into ``namespace`` (setns affects only the
    calling thread); a socket keeps the namespace it was created in, whoever uses it later."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            outcome.append(make())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


class Lan:
    """A bridge in its own namespace, and host namespaces plugged into it."""

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        reap_stale()
        self.tag = f"{_NAME_PREFIX}{os.getpid()}x{secrets.token_hex(3)}"
        self.switch = f"{self.tag}-sw"
        self.hosts: list[Host] = []
        self.processes: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._add_namespace(self.switch)
            _ip(
                "-n",
                self.switch,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            )
            _ip("-n", self.switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def add_host(self) -> Host:
        """A new namespace on the LAN with the next free address."""
        index = len(self.hosts) + 1
        if index > MAX_HOSTS:
            raise NetnsUnavailable(f"a Lan holds at most {MAX_HOSTS} hosts")
        name, port, ip = f"{self.tag}-h{index}", f"p{index}", f"{SUBNET}.{index}"
        try:
            self._add_namespace(name)
            _ip("-n", name, "link", "set", "lo", "up")
            _ip(
                "-n",
                self.switch,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                name,
            )
            _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", name, "addr", "add", f"{ip}/{PREFIX_LEN}", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", "eth0")
        except BaseException:
            self.close()
            raise
        host = Host(name, ip, index, self)
        self.hosts.append(host)
        return host

    def add_hosts(self, count: int) -> list[Host]:
        return [self.add_host() for _ in range(count)]

    def close(self) -> None:
        """Stop every process started here and delete every namespace. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for proc in self.processes:  # all at once: each may take a moment to stop cleanly
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            _stop(proc)
        for namespace in reversed(self._namespaces):  # hosts first, the switch last
            _kill_inside(namespace)
            _ip("netns", "del", namespace, check=False)
        atexit.unregister(self.close)

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class LineReader:
    """Reads a process's text output line by line in a thread; waits with timeouts, no sleeps.

    Lines that are JSON objects are decoded into ``items``, in order; every line is kept in
    ``raw`` for failure messages. ``wait_for`` returns the first item, old or new, that matches
    and that no earlier ``wait_for`` returned, so waits need not come in the order lines do.
    """

    def __init__(self, stream: IO[str], label: str = "") -> None:
        self.label = label
        self.items: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._taken: set[int] = set()
        self._ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):  # the stream closed under us
            for line in stream:
                try:
                    item = json.loads(line)
                except ValueError:
                    item = None
                with self._cond:
                    self.raw.append(line.rstrip("\n"))
                    if isinstance(item, dict):
                        self.items.append(item)
                    self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 what: str = "matching line") -> dict[str, Any]:
        """The first untaken JSON object satisfying ``predicate``; AssertionError on timeout
        or when the stream ends first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, item in enumerate(self.items):
                    if index not in self._taken and predicate(item):
                        self._taken.add(index)
                        return item
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    raise AssertionError(
                        f"{self.label}: no {what} within {timeout} s "
                        f"({'the output ended' if self._ended else 'timed out'}); last output:\n"
                        + "\n".join(self.raw[-40:]))
                self._cond.wait(remaining)


# --- pytest fixtures ------------------------------------------------------------------------------


@pytest.fixture
def netns_lan() -> Iterator[Lan]:
    """A fresh, empty ``Lan`` (skips where namespaces cannot be made); closed after the test."""
    try:
        lan = Lan()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    with lan:
        yield lan


@pytest.fixture
def netns_hosts(netns_lan: Lan) -> Callable[[int], list[Host]]:
    """``netns_hosts(n)`` adds n hosts to this test's LAN and returns them."""
    return netns_lan.add_hosts
