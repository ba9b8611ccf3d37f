"""Shared test fixtures.

A test that takes ``ucxl_impl``, ``dedup_impl`` or ``lz4_impl`` runs once against the pure-Python
twin and once against the compiled module. Where the compiled module was not built the compiled
run is skipped, unless BZZZ_EDGE_REQUIRE_NATIVE=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bzzz_edge import _native

REQUIRE_NATIVE = os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1"
_IMPL_FIXTURES = {f"{name}_impl": name for name in _native.PURE_MODULES}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture in _IMPL_FIXTURES:
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, ["pure", "compiled"], indirect=True)


# The pure pass (BZZZ_EDGE_PURE=1) runs every test that stays in this process, and of the tests
# that start node processes (``slow``) those marked ``pure_nodes``: nodes whose traffic goes
# through every twin (dedup, compression, UCXL parsing) as a cluster, a user's CLI and an attack
# use them. The twins themselves are checked against the compiled modules byte for byte in both
# passes (the ``*_impl`` fixtures above); running every other cluster test a second time would
# test the same trio, Raft and membership code again for about nine minutes.
# BZZZ_EDGE_PURE_ALL=1 runs them all anyway.
_PURE_PASS_SKIP = pytest.mark.skip(
    reason="starts nodes: run in the compiled pass; the pure pass starts nodes only in the "
           "tests marked pure_nodes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    pure_pass = _native.FORCED_PURE and os.environ.get("BZZZ_EDGE_PURE_ALL") != "1"
    if pure_pass:
        for item in items:
            if item.get_closest_marker("slow") and not item.get_closest_marker("pure_nodes"):
                item.add_marker(_PURE_PASS_SKIP)
    _list_the_cluster_tests_for_the_scheduler(config, items)


# --- two workers (pytest-xdist) ------------------------------------------------------------------
#
# The README's test command runs the suite on two pytest-xdist workers (``-n 2``): most of it
# waits, on timeouts and on processes starting, rather than computing. Every test that starts
# node processes (``slow``) goes to one group, which one worker runs in collection order, as a
# plain run does: two clusters never compete for the cores, and a test that holds peers alive
# under load (the membership lab, the insider floods) shares the machine with in-process tests
# only; a module-scoped cluster is also built once, not once per worker. The other worker takes
# the in-process tests a module at a time, and the ``lone_node`` ones: a single node at a time (the
# CLI against a data dir, a restart), nothing that holds peers alive, so they may run beside a
# cluster as an in-process test does.
#
# Not with ``xdist_group`` marks: xdist passes a mark's group to the scheduler by renaming the
# test's node ID, and on pytest 9.2 the rename no longer takes (pytest-xdist issue 1386), so
# every test would be scheduled alone. Each worker writes the node IDs of its cluster tests
# (``slow``, not ``lone_node``) to a file instead, and the scheduler below reads them once every
# worker has collected.
CLUSTERS_GROUP = "clusters"
_GROUP_DIR_KEY = "bzzz_clusters_group_dir"
_group_dirs: dict[int, Path] = {}


def _group_dir(config: pytest.Config) -> Path:
    """The controller's directory for the workers' lists (one per run, removed at its end)."""
    if id(config) not in _group_dirs:
        _group_dirs[id(config)] = Path(tempfile.mkdtemp(prefix="bzzz-xdist-groups-"))
    return _group_dirs[id(config)]


def pytest_unconfigure(config: pytest.Config) -> None:
    group_dir = _group_dirs.pop(id(config), None)
    if group_dir is not None:
        shutil.rmtree(group_dir, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # controller: a worker is being set up
    node.workerinput[_GROUP_DIR_KEY] = str(_group_dir(node.config))


def _list_the_cluster_tests_for_the_scheduler(config: pytest.Config,
                                              items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)  # only on an xdist worker
    if workerinput is None or _GROUP_DIR_KEY not in workerinput:
        return
    grouped = "".join(f"{item.nodeid}\n" for item in items if item.get_closest_marker("slow")
                      and not item.get_closest_marker("lone_node"))
    path = Path(workerinput[_GROUP_DIR_KEY]) / f"{workerinput['workerid']}.txt"
    partial = path.with_suffix(".partial")
    partial.write_text(grouped)
    partial.rename(path)  # whole or absent, never half-written, when the scheduler reads it


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # controller, after collection
    if config.getvalue("dist") not in ("load", "loadgroup"):  # -n alone gives "load"
        return None
    from xdist.scheduler import LoadScopeScheduling

    group_dir = _group_dir(config)

    class NodeTestsInOneGroup(LoadScopeScheduling):
        """``loadgroup`` with one group, the tests that start clusters; every other test with
        the others of its module."""

        _grouped: set[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            # First called once every worker has collected (and written its list).
            if self._grouped is None:
                lists = [p.read_text().splitlines() for p in group_dir.glob("*.txt")]
                assert lists, "no xdist worker wrote the node IDs of its cluster tests"
                self._grouped = set().union(*lists)
            # Any other test goes with its module: a module-scoped fixture (the 1,000-node DHT
            # simulation's network) is built on one worker, not on both.
            return CLUSTERS_GROUP if nodeid in self._grouped else nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node) -> None:
            # The group is the longest unit by far: it starts first, on the first worker.
            if CLUSTERS_GROUP in self.workqueue:
                self.workqueue.move_to_end(CLUSTERS_GROUP, last=False)
            super()._assign_work_unit(node)

    return NodeTestsInOneGroup(config, log)


def _impl(request: pytest.FixtureRequest, name: str):
    if request.param == "pure":
        return _native.pure_module(name)
    module = _native.compiled_module(name)
    if module is None:
        if REQUIRE_NATIVE:
            pytest.fail(f"compiled module for {name!r} is missing but BZZZ_EDGE_REQUIRE_NATIVE=1")
        pytest.skip(f"compiled module for {name!r} was not built (no C compiler at install?)")
    return module


@pytest.fixture
def ucxl_impl(request: pytest.FixtureRequest):
    return _impl(request, "ucxl")


@pytest.fixture
def dedup_impl(request: pytest.FixtureRequest):
    return _impl(request, "dedup")


@pytest.fixture
def lz4_impl(request: pytest.FixtureRequest):
    return _impl(request, "lz4")


# --- real node processes -------------------------------------------------------------------------

import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

HARNESS_DIR = Path(__file__).parent / "_harness"


def _load_harness(name: str):
    """Load tests/_harness/<name>.py once, by path (test modules cannot import each other)."""
    import importlib.util

    key = f"_bzzz_test_harness_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HARNESS_DIR / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


# Harness modules that tests in several directories use, loaded here once: a test module takes
# its own from sys.modules (`sys.modules["_bzzz_test_harness_insider"]`), since it cannot import
# this file; fixtures below hand out the rest.
netns = _load_harness("netns")
_load_harness("insider")
_load_harness("raft_cluster")
_load_harness("local_cluster")  # start_all: a cluster's nodes started at once
_load_harness("dial")  # dial_and_wait: one in-process connection manager to another
_load_harness("local_pubsub")  # LocalPubSub: the HTTP endpoints' pub/sub, in process


@pytest.fixture(scope="session")
def raft_harness():  # -> module
    """tests/_harness/raft_cluster.py: waiting for a coordinator, proposing, checking logs."""
    return _load_harness("raft_cluster")
netns_lan = netns.netns_lan  # fixtures: network namespaces joined by a bridge
netns_hosts = netns.netns_hosts
secure_pair = _load_harness("secure_pair").secure_pair  # fixture: two ends of a handshake


class NodeProcess:
    """A ``bzzz-edge run`` subprocess with a notify socket, a log reader and an exit code.

    Waits are on events (a datagram on the notify socket, a log line, process exit) with
    timeouts, never on sleeps.
    """

    def __init__(self, data_dir: Path, args: list[str], *, env: dict[str, str] | None = None,
                 script: list[str] | None = None, prefix: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.notify_path = data_dir.parent / f"notify-{data_dir.name}.sock"
        self.notify_path.unlink(missing_ok=True)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.lines: list[str] = []
        self._cond = threading.Condition()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BZZZ_EDGE_")
                    or k in ("BZZZ_EDGE_PURE", "BZZZ_EDGE_REQUIRE_NATIVE")}
        full_env.update(env or {})
        full_env["NOTIFY_SOCKET"] = str(self.notify_path)
        command = [sys.executable, *(script or ["-m", "bzzz_edge", "run"])]
        self.proc = subprocess.Popen(
            [*(prefix or []), *command, "--data-dir", str(data_dir), "--log-format", "json",
             *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=full_env,
            cwd=str(data_dir.parent), text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.status: dict[str, str] = {}

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def messages(self) -> list[str]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line)["msg"])
            except (ValueError, KeyError, TypeError):
                out.append(line)
        return out

    def wait_for_notify(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        """Wait for a notify datagram carrying ``key`` (e.g. READY=1); returns its fields."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            exited = self.proc.poll() is not None
            if remaining <= 0:
                raise AssertionError(f"no {key} from the node; log:\n" + "\n".join(self.lines))
            # Once the process is gone, only what is already queued on the socket can come.
            self.notify.settimeout(0 if exited else remaining)
            try:
                data = self.notify.recv(4096).decode()
            except (TimeoutError, BlockingIOError):
                if exited:
                    raise AssertionError(f"the node exited without sending {key}; log:\n"
                                         + "\n".join(self.lines)) from None
                continue
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.status.update(fields)
            if key in data.splitlines():
                return fields

    def wait_ready(self, timeout: float = 20.0) -> str:
        """Wait for READY=1; returns the API base URL from the STATUS line."""
        fields = self.wait_for_notify("READY=1", timeout)
        match = re.search(r"API on (http://[^;\s]+); peers on port (\d+)", fields.get("STATUS", ""))
        assert match, fields
        self.api, self.peer_port = match.group(1), int(match.group(2))
        return self.api

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages():
                    if regex.search(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line matching {pattern!r}:\n"
                                         + "\n".join(self.lines))
                self._cond.wait(remaining)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.notify.close()
        self.notify_path.unlink(missing_ok=True)


@pytest.fixture
def initialised_node(tmp_path: Path) -> Path:
    """A data dir with a fresh identity, network key and config (through the real CLI)."""
    from bzzz_edge.cli import main

    data_dir = tmp_path / "node"
    assert main(["init", "--data-dir", str(data_dir)]) == 0
    return data_dir


@pytest.fixture
def one_network(tmp_path: Path):
    """Init a data dir per name under ``tmp_path``, all with one network key (the real CLI);
    returns their paths."""
    from bzzz_edge.cli import main

    def init(names: list[str]) -> list[Path]:
        key_file = tmp_path / "network.key"
        data_dirs = []
        for name in names:
            data_dir = tmp_path / name
            args = ["init", "--data-dir", str(data_dir)]
            if key_file.exists():
                args += ["--network-key-file", str(key_file)]
            assert main(args) == 0
            if not key_file.exists():
                assert main(["network-key", "export", "--data-dir", str(data_dir),
                             "--output", str(key_file)]) == 0
            data_dirs.append(data_dir)
        return data_dirs

    return init


@pytest.fixture
def spawn_node() -> Iterator:
    """Start node processes; any still running at the end of the test are killed."""
    nodes: list[NodeProcess] = []

    def spawn(data_dir: Path, *args: str, env: dict[str, str] | None = None,
              script: list[str] | None = None, prefix: list[str] | None = None) -> NodeProcess:
        """``script``: a harness file in tests/_harness and its leading arguments;
        ``prefix``: a command to run the node under (e.g. ``ip netns exec NAME``)."""
        if script:
            script = [str(HARNESS_DIR / script[0]), *script[1:]]
        # Loopback only, no multicast: tests never send traffic off this machine.
        node = NodeProcess(data_dir, ["--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                                      "--set", "network.mdns=false", *args], env=env,
                           script=script, prefix=prefix)
        nodes.append(node)
        return node

    yield spawn
    for node in nodes:
        node.stop()
