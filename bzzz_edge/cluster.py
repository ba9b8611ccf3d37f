"""A local cluster: N real node processes on 127.0.0.1, for tests, benchmarks and users.

Each node gets its own data dir under one base dir and shares one network key. Ports are
chosen by the nodes themselves (port 0); the first node's peer port, learnt from its systemd
notification, is every other node's bootstrap peer, and membership spreads the rest. No
multicast: everything stays on loopback. Waiting is on events: a READY notification, or a line
in a node's log (read by a thread per node as it is written). Does I/O (processes, sockets).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BzzzError
from .identity import (
    Identity,
    format_node_id,
    generate_network_key,
    load_network_key,
    write_network_key,
)

__all__ = ["ClusterNode", "LocalCluster"]

_STATUS = re.compile(r"API on (http://[^;\s]+); peers on port (\d+)")


@dataclass
class ClusterNode:
    """One node process of a local cluster."""

    index: int
    data_dir: Path
    node_id: bytes
    process: subprocess.Popen[bytes] | None = None
    api: str = ""
    peer_port: int = 0
    log_path: Path = field(default=Path())
    messages: list[str] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)  # the JSON lines, parsed
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def short_id(self) -> str:
        """How this node's ID appears in other nodes' log lines."""
        return format_node_id(self.node_id)[:15]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _read_log(self, stream: Any) -> None:
        with self.log_path.open("a") as copy:
            for line in stream:
                text = line.decode(errors="replace")
                copy.write(text)
                copy.flush()
                try:
                    entry = json.loads(text)
                    message = entry["msg"]
                except (ValueError, KeyError, TypeError):
                    entry, message = {}, text.rstrip("\n")
                with self._cond:
                    self.messages.append(message)
                    self.entries.append(entry)
                    self._cond.notify_all()

    def wait_for_log(self, pattern: str, *, timeout: float, start: int = 0) -> str:
        """Wait for a log message matching ``pattern`` (from message number ``start`` on)."""
        regex = re.compile(pattern)
        found = self._wait_for(lambda: next(
            (m for m in self.messages[start:] if regex.search(m)), None),
            timeout, f"log line matching {pattern!r}")
        return str(found)

    def wait_for_event(self, event: str, *, timeout: float, start: int = 0,
                       **fields: Any) -> dict[str, Any]:
        """Wait for a structured log event (the ``event`` field of a JSON line) whose fields
        match ``fields``, from log line number ``start`` on."""
        wanted = {"event": event, **fields}
        found: dict[str, Any] = self._wait_for(lambda: next(
            (e for e in self.entries[start:]
             if all(e.get(k) == v for k, v in wanted.items())), None),
            timeout, str(wanted))
        return found

    def _wait_for(self, find: Any, timeout: float, what: str) -> Any:
        """Wait until ``find()`` (called under the log lock) returns something."""
        with self._cond:
            if self._cond.wait_for(find, timeout) is None:
                raise BzzzError(f"node{self.index}: no {what} within {timeout:g}s; "
                                f"see {self.log_path}")
            return find()

    def wait_for_new_log(self, *, timeout: float) -> None:
        """Wait until this node logs anything after now (or ``timeout`` passes)."""
        with self._cond:
            seen = len(self.messages)
            self._cond.wait_for(lambda: len(self.messages) > seen, timeout)

    def get(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(self.api + path, timeout=timeout) as response:
            return json.loads(response.read())

    def peers(self) -> dict[str, dict[str, Any]]:
        """This node's peer table by display node ID."""
        return {p["node_id"]: p for p in self.get("/api/v1/peers")["peers"]}


class LocalCluster:
    """Start, watch and stop a cluster of node processes.

    Args:
        base_dir: where the node data dirs go (created if missing).
        size: number of nodes.
        extra_args: more ``bzzz-edge run`` arguments for every node.
        env: extra environment for every node.
    """

    def __init__(self, base_dir: Path, size: int, *, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        if size < 1:
            raise BzzzError("a cluster needs at least one node")
        self.base_dir = base_dir
        self.extra_args = extra_args or []
        self.env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.env.update(env or {})
        base_dir.mkdir(parents=True, exist_ok=True)
        # A dir that holds a cluster already is resumed: the same network and identities, so
        # the nodes' stores (coordination group, records, peers) still describe them. New keys
        # over old state would leave each node in a coordination group of strangers.
        key_path = base_dir / "network.key"
        if key_path.exists():
            network_key = load_network_key(key_path)
        else:
            network_key = generate_network_key()
            write_network_key(key_path, network_key)
        self.nodes: list[ClusterNode] = []
        for index in range(size):
            data_dir = base_dir / f"node{index}"
            data_dir.mkdir(exist_ok=True, mode=0o700)
            identity_path = data_dir / "identity.key"
            if identity_path.exists():
                identity = Identity.load(identity_path)
            else:
                identity = Identity.generate()
                identity.save(identity_path)
            if not (data_dir / "network.key").exists():
                write_network_key(data_dir / "network.key", network_key)
            self.nodes.append(ClusterNode(index, data_dir, identity.node_id,
                                          log_path=base_dir / f"node{index}.log"))

    def start(self, timeout: float = 30.0) -> None:
        """Start every node: the first, then the rest bootstrapping from it."""
        self.start_node(self.nodes[0], timeout=timeout)
        for node in self.nodes[1:]:
            self.start_node(node, timeout=timeout)

    def start_node(self, node: ClusterNode, *, timeout: float = 30.0,
                   seed: ClusterNode | None = None) -> None:
        """Start (or restart) one node and wait for its READY notification.

        ``seed``: the node it bootstraps from (default: the first node).
        """
        if seed is None:
            seed = self.nodes[0] if node is not self.nodes[0] else None
        bootstrap = []
        if seed is not None and seed.peer_port:
            bootstrap = ["--set", f"network.bootstrap_peers=127.0.0.1:{seed.peer_port}"]
        notify_path = self.base_dir / f"notify{node.index}.sock"
        notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            node.process = subprocess.Popen(
                [sys.executable, "-m", "bzzz_edge", "run", "--data-dir", str(node.data_dir),
                 "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                 "--set", "network.mdns=false", "--log-format", "json", "--set",
                 f"node.name=node{node.index}", *bootstrap, *self.extra_args],
                env={**self.env, "NOTIFY_SOCKET": str(notify_path)},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.base_dir,
                start_new_session=True,  # Ctrl-C reaches the runner, which stops them in order
            )
            threading.Thread(target=node._read_log, args=(node.process.stderr,),
                             daemon=True).start()
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or node.process.poll() is not None:
                    raise BzzzError(f"node{node.index} did not become ready; see {node.log_path}")
                notify.settimeout(min(remaining, 0.5))
                try:
                    message = notify.recv(4096).decode()
                except TimeoutError:
                    continue
                match = _STATUS.search(message)
                if "READY=1" in message.splitlines() and match:
                    node.api, node.peer_port = match.group(1), int(match.group(2))
                    break
        notify_path.unlink(missing_ok=True)

    def wait_for_mesh(self, *, timeout: float) -> float:
        """Wait until every running node has every other one alive and connected, as its peer
        table says now (not a log line saying it once was); returns the seconds it took.

        Every change of a peer table is logged, so between checks this waits for a node whose
        table is not complete yet to log something new.
        """
        began = time.monotonic()
        running = [n for n in self.nodes if n.running]
        while True:
            lacking = [n for n in running if not self._sees_all(n, running)]
            if not lacking:
                return time.monotonic() - began
            remaining = timeout - (time.monotonic() - began)
            if remaining <= 0:
                raise BzzzError(f"no full mesh within {timeout:g}s: node"
                                f"{lacking[0].index} sees {sorted(lacking[0].peers())}")
            lacking[0].wait_for_new_log(timeout=min(remaining, 1.0))

    @staticmethod
    def _sees_all(node: ClusterNode, running: list[ClusterNode]) -> bool:
        table = {pid[:15]: p for pid, p in node.peers().items()}
        return all(other is node or (other.short_id in table
                                     and table[other.short_id]["status"] == "alive"
                                     and table[other.short_id]["connected"])
                   for other in running)

    def wait_for_status(self, target: ClusterNode, status: str, *, timeout: float,
                        since: dict[int, int] | None = None) -> float:
        """Wait until every other running node logs ``target`` changing to ``status``."""
        began = time.monotonic()
        for node in self.nodes:
            if node is target or not node.running:
                continue
            remaining = max(0.0, timeout - (time.monotonic() - began))
            node.wait_for_event("member_status", peer=target.short_id, status=status,
                                timeout=remaining, start=(since or {}).get(node.index, 0))
        return time.monotonic() - began

    def log_positions(self) -> dict[int, int]:
        """How many log messages each node has written so far (to wait for newer ones)."""
        return {node.index: len(node.messages) for node in self.nodes}

    def peer_tables(self) -> dict[int, dict[str, dict[str, Any]]]:
        """Every running node's peer table, from its HTTP API."""
        return {node.index: node.peers() for node in self.nodes if node.running}

    def kill(self, node: ClusterNode) -> None:
        """kill -9: no goodbye, no clean close."""
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(10)

    def stop(self, timeout: float = 15.0) -> list[int | None]:
        """SIGTERM every running node and wait; returns the exit codes."""
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for node in self.nodes:
            if node.process is None:
                codes.append(None)
                continue
            try:
                codes.append(node.process.wait(timeout))
            except subprocess.TimeoutExpired:
                node.process.kill()
                codes.append(node.process.wait())
        return codes

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

