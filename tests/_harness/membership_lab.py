"""A lab of real nodes in network namespaces, with delay and loss between them. Does I/O.

``MembershipLab(workdir, n)`` puts ``n`` hosts on a namespace LAN (``netns.py``), initialises a
node per host with one shared network key, and starts ``bzzz-edge run`` on each (listening on
the host's own address, every other host as a bootstrap peer, mDNS off). Every membership
change a node logs (``peer <id> <old> -> <new>``) is collected with the node's own timestamp,
so tests and the benchmark can count false suspicions and deaths and time detections.

Network conditions, set at any time with ``set_condition``:

- ``wired``: the kernel bridge, untouched;
- loss: nftables rules on the bridge (``numgen random``) drop that share of frames, both ways;
- delay: the host ports leave the bridge and ``delay_switch.py`` (a userspace switch on
  ``AF_PACKET`` sockets) forwards every frame after a random delay; the kernel has no netem.

Faults: ``kill9`` (SIGKILL, connections closed by the kernel), ``pause`` (SIGSTOP, connections
stay open), ``restart``, ``partition`` (nftables rules on the bridge drop every frame between
hosts of different groups; connections stay open, silent) and ``heal_partition``. ``api``
talks to a node's HTTP API from inside its namespace. Needs root, ``ip``, ``nft`` and
``ethtool``; ``unavailable_reason`` says what is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_PEER_LINE = re.compile(r"^peer (\S+) (\S+) -> (\S+) \(incarnation (\d+)\)")
_PORT = 7340
_NFT_TABLE = "bzzzlab"
_NFT_SPLIT = "bzzzsplit"


def _load_netns() -> Any:
    key = "_bzzz_test_harness_netns"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, _HERE / "netns.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


netns = _load_netns()


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    reason: str | None = netns.unavailable_reason()
    if reason is not None:
        return reason
    for tool in ("nft", "ethtool"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is not installed"
    return None


@dataclass(frozen=True)
class Change:
    """One membership change a node logged: ``observer`` saw ``peer`` go ``old`` -> ``new``."""

    ts: float
    observer: int
    peer: int
    old: str
    new: str


class LabNode:
    """One ``bzzz-edge run`` process in a host namespace, and the changes it logged."""

    def __init__(self, lab: MembershipLab, index: int) -> None:
        self.lab = lab
        self.index = index
        self.proc: subprocess.Popen[str] | None = None
        self.lines: deque[str] = deque(maxlen=40)  # its last lines, for a failure's message

    def start(self) -> None:
        lab, host = self.lab, self.lab.hosts[self.index]
        peers = ",".join(f"{h.ip}:{_PORT}" for h in lab.hosts if h is not host)
        args = [
            sys.executable,
            "-m",
            "bzzz_edge",
            "run",
            "--data-dir",
            str(lab.data_dirs[self.index]),
            "--log-format",
            "json",
            "--listen",
            f"0.0.0.0:{_PORT}",
            "--api-listen",
            "127.0.0.1:0",
            "--set",
            "network.mdns=false",
            "--set",
            f"network.advertise={host.ip}",
            "--set",
            f"network.bootstrap_peers={peers}",
            *lab.extra_args,
        ]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BZZZ_EDGE_") or k in ("BZZZ_EDGE_PURE", "BZZZ_EDGE_REQUIRE_NATIVE")
        }
        self.proc = host.popen(
            args,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=str(lab.workdir),
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(ValueError, OSError):
            for line in proc.stderr:
                self.lines.append(line)
                self.lab.on_line(self.index, line)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process so far."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MembershipLab:
    """``n`` nodes on a namespace LAN; see the module docstring."""

    def __init__(self, workdir: Path, n: int = 6, extra_args: tuple[str, ...] = ()) -> None:
        from bzzz_edge.cli import main
        from bzzz_edge.identity import Identity

        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.lan = netns.Lan()
        self.switch_proc: subprocess.Popen[str] | None = None
        self.changes: list[Change] = []
        self.cond = threading.Condition()
        try:
            self.hosts = self.lan.add_hosts(n)
            self._offloads_off()
            key_file = workdir / "network.key"
            self.data_dirs: list[Path] = []
            for host in self.hosts:
                data_dir = workdir / f"node{host.index}"
                args = ["init", "--data-dir", str(data_dir)]
                if key_file.exists():
                    args += ["--network-key-file", str(key_file)]
                with contextlib.redirect_stdout(io.StringIO()):  # init's chatter
                    assert main(args) == 0
                    if not key_file.exists():
                        export = ["network-key", "export", "--data-dir", str(data_dir)]
                        assert main([*export, "--output", str(key_file)]) == 0
                self.data_dirs.append(data_dir)
            self.short = [Identity.load(d / "identity.key").display_id[:15] for d in self.data_dirs]
            self.nodes = [LabNode(self, i) for i in range(n)]
        except BaseException:
            self.lan.close()
            raise

    # --- network ----------------------------------------------------------------------------

    def _switch_run(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.lan.switch, *args],
            check=check,
            capture_output=True,
            timeout=15,
        )

    def _offloads_off(self) -> None:
        # The userspace switch needs whole frames with finished checksums.
        for host in self.hosts:
            host.run(
                ["ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off", "gro", "off"],
                capture_output=True,
                check=False,
            )
            self._switch_run(
                "ethtool",
                "-K",
                f"p{host.index}",
                "tx",
                "off",
                "tso",
                "off",
                "gso",
                "off",
                "gro",
                "off",
                check=False,
            )

    def _move_ports(self, master: str) -> None:
        """Every host port off the bridge (``nomaster``) or onto it (``master br0``) at once."""
        batch = "".join(f"link set p{host.index} {master}\n" for host in self.hosts)
        subprocess.run(
            ["ip", "netns", "exec", self.lan.switch, "ip", "-batch", "-"],
            input=batch.encode(),
            check=True,
            capture_output=True,
            timeout=15,
        )

    def set_condition(
        self, *, delay: float = 0.0, jitter: float = 0.0, loss: float = 0.0, seed: int = 0
    ) -> None:
        """Wired (no arguments), one-way ``delay`` +- ``jitter`` seconds, and/or ``loss``."""
        self._clear_condition()
        ports = [f"p{h.index}" for h in self.hosts]
        if delay or jitter:
            args = [
                sys.executable,
                str(_HERE / "delay_switch.py"),
                "--delay",
                str(delay),
                "--jitter",
                str(jitter),
                "--loss",
                str(loss),
                "--seed",
                str(seed),
                *ports,
            ]
            self.switch_proc = subprocess.Popen(
                ["ip", "netns", "exec", self.lan.switch, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.lan.processes.append(self.switch_proc)
            assert self.switch_proc.stdout is not None and self.switch_proc.stdin is not None
            ready = self.switch_proc.stdout.readline()
            assert ready.strip() == "ready", self.switch_proc.stderr.read()  # type: ignore[union-attr]
            # Only now that the switch is up do the ports leave the bridge, all in one command,
            # and the switch takes over: the LAN is cut for milliseconds.
            self._move_ports("nomaster")
            self.switch_proc.stdin.write("go\n")
            self.switch_proc.stdin.flush()
        elif loss:
            per_mille = round(loss * 1000)
            self._bridge_rules(_NFT_TABLE, 0, f" numgen random mod 1000 < {per_mille} drop\n")

    def _clear_condition(self) -> None:
        if self.switch_proc is not None:
            # Back onto the bridge first, then the switch sends what it still holds and exits.
            self._move_ports("master br0")
            assert self.switch_proc.stdin is not None
            with contextlib.suppress(OSError):
                self.switch_proc.stdin.write("drain\n")
                self.switch_proc.stdin.close()
            try:
                self.switch_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.switch_proc.kill()
                self.switch_proc.wait(10)
            self.switch_proc = None
        self._switch_run("nft", "delete", "table", "bridge", _NFT_TABLE, check=False)

    def partition(self, groups: list[list[int]]) -> None:
        """Cut the LAN into ``groups`` of node indexes: frames between groups are dropped."""
        self.heal_partition()
        group_of = {self.hosts[index].index: g for g, members in enumerate(groups)
                    for index in members}
        drops = "".join(
            f' iifname "p{a}" oifname "p{b}" drop\n'
            for a in group_of
            for b in group_of
            if group_of[a] != group_of[b]
        )
        self._bridge_rules(_NFT_SPLIT, -1, drops)

    def _bridge_rules(self, table: str, priority: int, rules: str) -> None:
        """An nftables table on the bridge whose forward chain holds ``rules`` (one per line)."""
        script = (
            f"table bridge {table} {{\n chain forward {{\n"
            f" type filter hook forward priority {priority}; policy accept;\n"
            f"{rules} }}\n}}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.lan.switch, "nft", "-f", "-"],
            input=script.encode(),
            check=True,
            capture_output=True,
            timeout=15,
        )

    def heal_partition(self) -> None:
        self._switch_run("nft", "delete", "table", "bridge", _NFT_SPLIT, check=False)

    # --- nodes ------------------------------------------------------------------------------

    def api(self, index: int, path: str, body: dict[str, Any] | None = None,
            timeout: float = 10.0) -> tuple[int, Any]:
        """(status, decoded JSON) of a GET, or of a POST of ``body``, to node ``index``'s API."""
        runtime = json.loads((self.data_dirs[index] / "node.json").read_text())
        port = int(runtime["api"].rsplit(":", 1)[1])
        connection = self.hosts[index].http_connection(port, timeout=timeout)
        try:
            if body is None:
                connection.request("GET", path)
            else:
                connection.request("POST", path, json.dumps(body),
                                   {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def on_line(self, observer: int, line: str) -> None:
        try:
            entry = json.loads(line)
            match = _PEER_LINE.match(entry["msg"])
        except (ValueError, KeyError, TypeError):
            return
        if match is None or match.group(1) not in self.short:
            return
        change = Change(
            float(entry["ts"]),
            observer,
            self.short.index(match.group(1)),
            match.group(2),
            match.group(3),
        )
        with self.cond:
            self.changes.append(change)
            self.cond.notify_all()

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def serving(self) -> bool:
        """Every node has written its runtime file (its API is up), each still running.

        Raises:
            AssertionError: a node exited (its exit code and last lines in the message).
        """
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(f"lab: node {node.index} exited with {node.proc.returncode}:"
                                     f"\n{''.join(node.lines)}")
        return all((self.data_dirs[node.index] / "node.json").exists() for node in self.nodes)

    def running(self) -> list[int]:
        return [node.index for node in self.nodes if node.running]

    def view(self, observer: int, since: float = 0.0) -> dict[int, str]:
        """What ``observer`` last logged about each peer (changes at or after ``since``)."""
        seen: dict[int, str] = {}
        for change in self.changes:
            if change.observer == observer and change.ts >= since:
                seen[change.peer] = change.new
        return seen

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"lab: {what} not within {timeout} s")
                self.cond.wait(min(remaining, 0.5))

    def converged(self, since: float = 0.0) -> bool:
        """Every running node has logged every other running node alive (since ``since``)."""
        running = self.running()
        return all(
            self.view(i).get(j) == "alive" and (since == 0.0 or self._alive_since(i, j, since))
            for i in running
            for j in running
            if i != j
        )

    def _alive_since(self, observer: int, peer: int, since: float) -> bool:
        return any(
            c.observer == observer and c.peer == peer and c.new == "alive" and c.ts >= since
            for c in self.changes
        )

    def count(
        self, new: str, since: float, until: float | None = None, about: int | None = None
    ) -> int:
        """How many ``-> new`` changes were logged in [since, until) (about one peer)."""
        with self.cond:
            return sum(
                1
                for c in self.changes
                if c.new == new
                and c.ts >= since
                and (until is None or c.ts < until)
                and (about is None or c.peer == about)
            )

    def deaths_of_suspicions_since(self, since: float) -> int:
        """``-> dead`` changes logged at or after ``since`` that end a suspicion which also began
        then: the observer's last ``-> suspect`` of that peer before it declared it dead is at
        or after ``since`` (or it never suspected it, and took the death from others' news).

        A suspicion raised before ``since`` (while a network condition was switched over) and
        expiring after it belongs to the switch-over, which benchmarks/bench_membership_lab.py
        reports on its own.
        """
        with self.cond:
            count = 0
            suspected: dict[tuple[int, int], float] = {}
            for c in sorted(self.changes, key=lambda c: c.ts):
                if c.new == "suspect":
                    suspected[(c.observer, c.peer)] = c.ts
                elif c.new == "dead" and c.ts >= since:
                    count += suspected.get((c.observer, c.peer), since) >= since
            return count

    def kill9(self, index: int) -> float:
        node = self.nodes[index]
        assert node.proc is not None
        when = time.time()
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        return when

    def pause(self, index: int, seconds: float) -> None:
        """SIGSTOP the node for ``seconds`` (the fault itself, not a wait for something)."""
        node = self.nodes[index]
        assert node.proc is not None
        node.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            node.proc.send_signal(signal.SIGCONT)

    def detection(self, victim: int, since: float, timeout: float) -> float:
        """Seconds from ``since`` until every other running node logged ``victim`` dead."""
        others = [i for i in self.running() if i != victim]

        def first_dead() -> dict[int, float]:
            found: dict[int, float] = {}
            for c in self.changes:
                if c.peer == victim and c.new == "dead" and c.ts >= since:
                    found.setdefault(c.observer, c.ts)
            return found

        self.wait_until(
            lambda: all(i in first_dead() for i in others),
            timeout,
            f"node {victim} dead everywhere",
        )
        return max(first_dead()[i] for i in others) - since

    def restart(self, index: int, timeout: float = 60.0) -> None:
        since = time.time()
        self.nodes[index].start()
        self.wait_until(
            lambda: (
                self.converged(since=0.0)
                and all(self._alive_since(i, index, since) for i in self.running() if i != index)
            ),
            timeout,
            f"node {index} back alive everywhere",
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._clear_condition()
            self.heal_partition()
        self.lan.close()

    def __enter__(self) -> MembershipLab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
