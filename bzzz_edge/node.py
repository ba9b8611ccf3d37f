"""The node: composes the components under one trio root nursery and owns their lifecycle.

Start order: the data-dir lock, signal handling, storage, health checks, HTTP API, then READY.
Stop order is the shutdown manager's (see lifecycle/shutdown.py): pre-shutdown (leave
readiness), shutdown (services in priority order), post-shutdown (storage), cleanup (runtime
file); the lock goes when the process does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import trio

from . import __version__, _native
from .api import ApiServer, create_app
from .config import SCHEMA, Config, systemd_environment
from .errors import BzzzError, ConfigError
from .identity import Identity, format_node_id, load_network_key, network_fingerprint
from .lifecycle.datadir import DataDirLock, create_private
from .lifecycle.health import Check, CheckFailed, HealthRegistry, disk_check, memory_check
from .lifecycle.metrics import Metrics
from .lifecycle.shutdown import ExitCode, Phase, ShutdownManager
from .lifecycle.systemd import Notifier
from .logs import set_level
from .mesh import Mesh
from .store import Store

__all__ = ["RUNTIME_FILE", "Node"]

log = logging.getLogger(__name__)

RUNTIME_FILE = "node.json"  # in the data dir while the node runs: pid and API URL
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


class Node:
    """One bzzz-edge node. Build it with ``Node.load(config)``, then ``await node.run()``."""

    def __init__(self, config: Config, identity: Identity, network_key: bytes, *,
                 lock: DataDirLock | None = None) -> None:
        self.config = config
        self._lock = lock
        self.identity = identity
        self._network_fingerprint = network_fingerprint(network_key)
        self.metrics = Metrics()
        self.shutdown = ShutdownManager(
            deadline=config["shutdown.deadline"],
            default_timeout=config["shutdown.component_timeout"],
        )
        self.health = HealthRegistry(on_critical=self._critical_failure)
        self.store: Store | None = None
        self.mesh: Mesh | None = None
        self._network_key = network_key
        self.api_url = ""
        self.peer_port = 0
        self._ready = False
        self._started = time.monotonic()
        socket_path, self._watchdog_interval = systemd_environment()
        self._notifier = Notifier(socket_path)
        self._add_builtin_checks()
        self._add_builtin_metrics()

    @classmethod
    def load(cls, config: Config, *, lock: DataDirLock | None = None) -> Node:
        """Load the identity and network key named by ``config`` (refusing unsafe files).

        ``lock``: the data-dir lock if the caller already holds it; ``run`` takes it otherwise.

        Raises:
            IdentityError: a key file is missing, malformed or readable by others.
        """
        identity = Identity.load(config.identity_file)
        return cls(config, identity, load_network_key(config.network_key_file), lock=lock)

    # --- what the API and CLI see -------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Started, not stopping, and with as many alive peers as ``health.min_peers`` asks."""
        return self._ready and self.alive_peers() >= self.config["health.min_peers"]

    def alive_peers(self) -> int:
        return 0 if self.mesh is None else self.mesh.alive_peers()

    @property
    def shutting_down(self) -> bool:
        return self.shutdown.requested

    def info(self) -> dict[str, Any]:
        return {
            "node_id": self.identity.display_id,
            "name": self.config["node.name"],
            "version": __version__,
            "implementations": _native.implementations(),
            "uptime_s": time.monotonic() - self._started,
            "pid": os.getpid(),
            "api": self.api_url,
            "peer_port": self.peer_port,
            "alive_peers": self.alive_peers(),
            "connected_peers": 0 if self.mesh is None else len(self.mesh.manager.connections),
            "data_dir": str(self.config.data_dir),
            "network_fingerprint": self._network_fingerprint,
            "ready": self.ready,
        }

    def peer_list(self) -> list[dict[str, Any]]:
        return [] if self.mesh is None else [p.as_dict() for p in self.mesh.peers()]

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> ExitCode:
        """Run until a shutdown completes; returns the process exit code.

        Raises:
            BzzzError: another node holds the data dir (unless the lock was passed in).
        """
        if self._lock is None or not self._lock.held:
            self._lock = DataDirLock.acquire(self.config.data_dir)
        self.store = Store(self.config.data_dir / "store",
                           map_size=self.config["storage.map_size_mb"] * 2**20)
        if not self.store.previous_clean:
            log.warning("the previous run did not shut down cleanly")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._handle_signals)
            self.shutdown.register("storage", self._close_store, phase=Phase.POST_SHUTDOWN)
            self.shutdown.register("readiness", self._leave_readiness, phase=Phase.PRE_SHUTDOWN)
            self.mesh = Mesh(self.config, self.identity, self._network_key, self.store)
            self.peer_port = await self._start_service(nursery, "mesh", self.mesh.run,
                                                       priority=50)
            self.shutdown.register("leave-mesh", self.mesh.leave, phase=Phase.PRE_SHUTDOWN,
                                   priority=60, timeout=2.0)
            await self._start_service(nursery, "health", self.health.run, priority=80)
            api = ApiServer(create_app(self, token=self.config["api.token"]),
                            self.config["api.listen"])
            self.api_url = await nursery.start(api.run)
            self.shutdown.register("api", api.stop, priority=90, timeout=3.0)
            self._write_runtime_file()
            self.shutdown.register("runtime-file", self._remove_runtime_file, phase=Phase.CLEANUP)
            if self._watchdog_interval:
                nursery.start_soon(self._watchdog)
            self._ready = True
            self._notifier.notify("READY=1", f"STATUS=ready; API on {self.api_url}; "
                                  f"peers on port {self.peer_port}")
            nursery.start_soon(self._log_when_ready)
            await self.shutdown.wait_requested()
            self._notifier.notify("STOPPING=1", f"STATUS=stopping: {self.shutdown.reason}")
            code = await self.shutdown.execute()
            nursery.cancel_scope.cancel()
        self.shutdown.cancel_deadline()
        self._notifier.close()
        self._lock.release()
        return code

    async def _log_when_ready(self) -> None:
        """Log "ready" once /health/ready says so (with ``health.min_peers``, after the peers)."""
        while not (self.ready and not self.health.critical_failing):
            await trio.sleep(0.1)  # only until ready (min_peers), once per start
            if self.shutting_down:
                return
        log.info("node %s ready %.3fs after process start; API on %s",
                 self.identity.display_id, _seconds_since_process_start(), self.api_url)

    async def _start_service(
        self,
        nursery: trio.Nursery,
        name: str,
        run: Callable[..., Awaitable[None]],
        *,
        priority: int = 50,
        timeout: float | None = None,
    ) -> Any:
        """Start a long-running service in its own cancel scope; stopping cancels it.

        Returns what the service passed to ``task_status.started``.
        """
        scope = trio.CancelScope()
        done = trio.Event()

        async def supervised(*, task_status: trio.TaskStatus[Any]) -> None:
            try:
                with scope:
                    await run(task_status=task_status)
            finally:
                done.set()

        async def stop() -> None:
            scope.cancel()
            await done.wait()

        started = await nursery.start(supervised)
        self.shutdown.register(name, stop, priority=priority, timeout=timeout)
        return started

    async def _handle_signals(self) -> None:
        with trio.open_signal_receiver(*_STOP_SIGNALS, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    self.reload_config()
                elif self.shutdown.requested:
                    self.shutdown.force(f"second signal {name}")
                else:
                    self.shutdown.request(f"received {name}")

    async def _leave_readiness(self) -> None:
        self._ready = False

    async def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()

    async def _watchdog(self) -> None:
        assert self._watchdog_interval is not None
        while True:
            if not self.health.critical_failing:
                self._notifier.notify("WATCHDOG=1")
            await trio.sleep(self._watchdog_interval / 2)

    def _critical_failure(self, check: Check) -> None:
        self.shutdown.request(
            f"critical health check {check.name} failing for "
            f"{check.result.consecutive_failures} runs: {check.result.message}",
            ExitCode.UNHEALTHY,
        )

    # --- configuration reload (SIGHUP) --------------------------------------------------------

    def reload_config(self) -> dict[str, Any]:
        """Re-read the config file and environment; apply what may change at run time.

        Returns ``{"applied": [keys], "restart_needed": [keys]}``, or ``{"error": message}``
        when the new configuration is refused (the running one is kept).
        """
        try:
            new = self.config.reload()
        except ConfigError as exc:
            log.error("config reload failed, keeping the running configuration: %s", exc)
            return {"error": str(exc)}
        changed = [k for k in SCHEMA if new[k.dotted] != self.config[k.dotted]]
        if not changed:
            log.info("config reloaded: nothing changed")
            return {"applied": [], "restart_needed": []}
        for key in changed:
            if key.reloadable:
                log.info("config reloaded: %s changed from %s to %s", key.dotted,
                         "********" if key.secret else self.config[key.dotted],
                         "********" if key.secret else new[key.dotted])
            else:
                log.warning("config reload: %s changed but needs a restart to take effect",
                            key.dotted)
        applied = {k.dotted: new[k.dotted] for k in changed if k.reloadable}
        self.config = Config({**self.config.values, **applied},
                             {**self.config.sources, **{k: new.sources[k] for k in applied}},
                             self.config.file, self.config._inputs)
        set_level(self.config["log.level"])
        for check in self.health.checks.values():
            self.health.update(check.name, interval=self.config["health.interval"],
                               timeout=self.config["health.timeout"],
                               grace_period=self.config["health.grace_period"])
        return {"applied": list(applied),
                "restart_needed": [k.dotted for k in changed if not k.reloadable]}

    # --- operator requests (API) --------------------------------------------------------------

    async def join(self, address: tuple[str, int]) -> str | None:
        """Dial a peer now; the display ID of the node that answered, or None within 10 s."""
        if self.mesh is None:
            return None
        node = await self.mesh.join(address, timeout=10.0)
        return None if node is None else format_node_id(node)

    def leave(self) -> None:
        """Leave gracefully, as on SIGTERM: ``left`` is announced, then the process exits 0."""
        self.shutdown.request("leave requested over the API")

    def force_leave(self, node_id: bytes) -> dict[str, Any]:
        """Mark a dead or retired peer departed everywhere.

        Raises:
            BzzzError: no such member, or it is this node.
        """
        if self.mesh is None:
            raise BzzzError("the mesh is not running")
        self.mesh.force_leave(node_id)
        log.info("peer %s forced out by an operator", format_node_id(node_id)[:15])
        return {"node_id": format_node_id(node_id), "status": "left"}

    # --- built-in checks, metrics and the runtime file ----------------------------------------

    def _add_builtin_checks(self) -> None:
        cfg = self.config
        checks = {
            "memory": memory_check(lambda: self.config["health.memory_max_percent"]),
            "disk": disk_check(cfg.data_dir, lambda: self.config["health.disk_min_free_mb"]),
            "p2p": self._p2p_check,
        }
        for name, fn in checks.items():
            self.health.add(Check(name, fn, interval=cfg["health.interval"],
                                  timeout=cfg["health.timeout"],
                                  critical=name in cfg["health.critical"],
                                  grace_period=cfg["health.grace_period"]))

    def _add_builtin_metrics(self) -> None:
        impl_labels = [f"impl_{name}" for name in _native.PURE_MODULES]
        info = self.metrics.gauge("node_info", "Constant 1, labelled with node facts",
                                  ["version", "node_id", *impl_labels])
        info.labels(__version__, self.identity.display_id,
                    *_native.implementations().values()).set(1)
        self.metrics.callback_gauge(
            "health_check_ok", "1 when the health check passes, 0 when failing or pending",
            ["check", "critical"],
            lambda: [([n, str(c.critical).lower()], float(c.result.status == "ok"))
                     for n, c in self.health.checks.items()])
        self.metrics.callback_gauge("ready", "1 when the node is ready for work", [],
                                    lambda: [([], float(self.ready))])
        self.metrics.callback_gauge(
            "peers", "Peers by membership status", ["status"],
            lambda: _count_by(p.status for p in (self.mesh.peers() if self.mesh else [])))
        self.metrics.callback_gauge(
            "net_events", "Transport counters (handshake failures, bans, drops...)", ["event"],
            lambda: [([k], float(v)) for k, v in
                     (self.mesh.manager.counters.items() if self.mesh else [])])
        self.metrics.callback_gauge("uptime_seconds", "Seconds since the node started", [],
                                    lambda: [([], time.monotonic() - self._started)])

    async def _p2p_check(self) -> str:
        if self.mesh is None or not self.mesh.started.is_set():
            raise CheckFailed("the mesh is not running")
        alive, connected = self.alive_peers(), len(self.mesh.manager.connections)
        wanted = self.config["health.min_peers"]
        if alive < wanted:
            raise CheckFailed(f"{alive} alive peers, {wanted} required; {connected} connected")
        return f"{alive} alive peers, {connected} connected, listening on port {self.peer_port}"

    def _write_runtime_file(self) -> None:
        create_private(self.config.data_dir / RUNTIME_FILE,
                       json.dumps({"pid": os.getpid(), "api": self.api_url,
                                   "peer_port": self.peer_port,
                                   "node_id": self.identity.display_id}).encode(),
                       replace=True)

    async def _remove_runtime_file(self) -> None:
        (self.config.data_dir / RUNTIME_FILE).unlink(missing_ok=True)


def _seconds_since_process_start() -> float:
    """From the kernel's start time in clock ticks (10 ms), not psutil's whole seconds."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return float(time.time() - psutil.Process().create_time())


def _count_by(values: Any) -> list[tuple[list[str], float]]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return [([key], float(n)) for key, n in counts.items()]


def run_node(node: Node) -> int:
    """Run ``node`` under trio and return the exit code (for the CLI and test harnesses)."""
    try:
        return int(trio.run(node.run))
    except BzzzError as exc:
        log.error("node stopped: %s", exc)
    except BaseExceptionGroup as group:
        ours, rest = group.split(BzzzError)
        if ours is None or rest is not None:
            raise
        for leaf in _leaves(ours):
            log.error("node stopped: %s", leaf)
    if node.store is not None:
        node.store.close()
    return int(ExitCode.ERROR)


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
