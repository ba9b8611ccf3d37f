"""The node: composes the components under one trio root nursery and owns their lifecycle.
Uses trio.

Start order: the data-dir lock, signal handling, storage, the transport and the services on it
(``peering.start_peering``), health checks, HTTP API, then READY.
Stop order is the shutdown manager's (see lifecycle/shutdown.py): pre-shutdown (leave
readiness), shutdown (services in priority order), post-shutdown (storage), cleanup (runtime
file); the lock goes when the process does.
"""

from __future__ import annotations

import gc
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
from .agents.wiring import start_agents
from .api import ApiServer, create_app
from .config import Config, systemd_environment
from .consensus.service import ConsensusService
from .consensus.storage import DATABASES as RAFT_DATABASES
from .consensus.wiring import raft_config
from .dht.storage import DATABASES as DHT_DATABASES
from .discovery.service import LanDiscovery
from .errors import BzzzError, ConfigError
from .gossip.service import GossipService
from .identity import (
    Identity,
    format_node_id,
    load_network_key,
    network_fingerprint,
    network_id,
)
from .ids import short_id
from .lifecycle.datadir import RUNTIME_FILE, DataDirLock, create_private
from .lifecycle.health import Check, HealthRegistry
from .lifecycle.memory import HeapTrimmer, release_free_heap
from .lifecycle.metrics import Metrics
from .lifecycle.shutdown import ExitCode, Phase, ShutdownManager
from .lifecycle.slice import request_short_slice
from .lifecycle.systemd import Notifier
from .logs import set_level
from .membership.service import MembershipService
from .net import ConnectionManager
from .observe import add_builtin_checks, add_builtin_metrics
from .peering import (
    PROTOCOL_VERSION,
    gossip_config,
    join,
    start_peering,
)
from .signedlog.replication import Replicator
from .signedlog.service import LogService
from .signedlog.storage import DATABASES as LOG_DATABASES
from .store import Store
from .store.content import DATABASES as CONTENT_DATABASES
from .store.content import ContentStore
from .store.metrics import add_store_metrics
from .tasks.storage import DATABASES as TASK_DATABASES
from .tasks.wiring import build_tasks, serve_task_rpcs, start_tasks

__all__ = ["PROTOCOL_VERSION", "RUNTIME_FILE", "Node"]

log = logging.getLogger(__name__)

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


class Node:
    """One bzzz-edge node. Build it with ``Node.load(config)``, then ``await node.run()``."""

    def __init__(self, config: Config, identity: Identity, network_key: bytes, *,
                 lock: DataDirLock | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self._lock = lock
        self.identity = identity
        self._network_fingerprint = network_fingerprint(network_key)
        self.metrics = Metrics()
        self.shutdown = ShutdownManager(
            deadline=config.settings.shutdown.deadline,
            default_timeout=config.settings.shutdown.component_timeout,
        )
        self.health = HealthRegistry(on_critical=self._critical_failure)
        self.store: Store | None = None
        self.content: ContentStore | None = None
        self.manager: ConnectionManager | None = None
        self.membership: MembershipService | None = None
        self.gossip: GossipService | None = None
        self._gossip_router = gossip_config(config)  # a bad gossip.* value: exit 2 at start
        self.discovery: LanDiscovery | None = None
        self.signed_log: LogService | None = None
        self._replicator: Replicator | None = None
        self.consensus: ConsensusService | None = None
        self.raft_config = raft_config(config)  # a bad coordination.* timing: exit 2 at start
        self.tasks: Any = None  # tasks.service.TaskService, once the store is open
        self.decision_machine: Any = None  # what consensus applies to: the tasks' decision log
        self.agents: Any = None  # agents.service.AgentService, once the tasks run
        self.dht: Any = None  # dht.DhtService and dht.ContentNetwork, once peering starts
        self.dht_content: Any = None
        self._network_key = network_key
        self.network_id = network_id(network_key)  # public: names the network, not its key
        self.api_url = ""
        self.peer_port = 0
        self._ready = False
        self._started = time.monotonic()
        socket_path, self._watchdog_interval = systemd_environment()
        self._notifier = Notifier(socket_path)
        add_builtin_checks(self)
        add_builtin_metrics(self)
        add_store_metrics(self.metrics, lambda: self.content)

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
        return self._ready and self.alive_peers() >= self.settings.health.min_peers

    def alive_peers(self) -> int:
        return 0 if self.membership is None else self.membership.alive_peers()

    @property
    def shutting_down(self) -> bool:
        return self.shutdown.requested

    def info(self) -> dict[str, Any]:
        return {
            "node_id": self.identity.display_id,
            "name": self.settings.node.name,
            "version": __version__,
            "implementations": _native.implementations(),
            "uptime_s": time.monotonic() - self._started,
            "pid": os.getpid(),
            "api": self.api_url,
            "peer_port": self.peer_port,
            "alive_peers": self.alive_peers(),
            "connected_peers": 0 if self.manager is None else len(self.manager.connections),
            "data_dir": str(self.config.data_dir),
            "network_fingerprint": self._network_fingerprint,
            "ready": self.ready,
            "store": None if self.content is None or self.content.closed else self.content.stats(),
            "coordination": None if self.consensus is None else self.consensus.status(),
        }

    def peer_list(self) -> list[dict[str, Any]]:
        return [] if self.membership is None else [p.as_dict() for p in self.membership.peers()]

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> ExitCode:
        """Run until a shutdown completes; returns the process exit code.

        Raises:
            BzzzError: another node holds the data dir (unless the lock was passed in).
        """
        if self._lock is None or not self._lock.held:
            self._lock = DataDirLock.acquire(self.config.data_dir)
        self.store = Store(self.config.data_dir / "store",
                           map_size=self.settings.storage.map_size_mb * 2**20,
                           databases=(*CONTENT_DATABASES, *LOG_DATABASES, *DHT_DATABASES,
                                      *RAFT_DATABASES, *TASK_DATABASES))
        self.content = ContentStore(
            self.store, author=self.identity.display_id,
            max_content_bytes=self.settings.storage.max_content_bytes,
            compress_min_bytes=self.settings.storage.compress_min_bytes)
        if not self.store.previous_clean:
            log.warning("the previous run did not shut down cleanly")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._handle_signals)
            self.shutdown.register("storage", self._close_store, phase=Phase.POST_SHUTDOWN)
            self.shutdown.register("readiness", self._leave_readiness, phase=Phase.PRE_SHUTDOWN)
            self.tasks = build_tasks(self)
            self.decision_machine = self.tasks.decisions
            self.peer_port = await start_peering(
                self, nursery, register_rpcs=lambda manager: serve_task_rpcs(self, manager))
            await start_tasks(self, nursery)
            await start_agents(self, nursery)
            await self._start_service(nursery, "health", self.health.run, priority=80)
            api = ApiServer(create_app(self, token=self.settings.api.token),
                            self.settings.api.listen)
            self.api_url = await nursery.start(api.run)
            self.shutdown.register("api", api.stop, priority=90, timeout=3.0)
            self._write_runtime_file()
            self.shutdown.register("runtime-file", self._remove_runtime_file, phase=Phase.CLEANUP)
            if self._watchdog_interval:
                nursery.start_soon(self._watchdog)
            self._ready = True
            # What start made (modules, config, keys, services) lives as long as the node:
            # frozen, it is no longer scanned by every full garbage collection. Collected
            # first, so no garbage is frozen with it.
            gc.collect()
            gc.freeze()
            release_free_heap()
            self._start_heap_trimmer(nursery)
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

    def _start_heap_trimmer(self, nursery: trio.Nursery) -> None:
        """What bursts of work free in the C heap goes back to the system once they are over
        (see lifecycle/memory.py); ``node.heap_trim_interval`` 0 turns it off."""
        node = self.settings.node
        if node.heap_trim_interval > 0:
            trimmer = HeapTrimmer(interval=node.heap_trim_interval,
                                  growth=int(node.heap_trim_growth_mb * 1e6))
            self.metrics.callback_gauge("heap_trims", "Times freed C heap was given back to "
                                        "the system after a burst of work", [],
                                        lambda: [([], float(trimmer.trims))])
            nursery.start_soon(trimmer.run)

    async def _log_when_ready(self) -> None:
        """Log "ready" once /health/ready says so (with ``health.min_peers``, after the peers)."""
        while not (self.ready and not self.health.critical_failing):
            await trio.sleep(0.1)  # only until ready (min_peers), once per start
            if self.shutting_down:
                return
        log.info("node %s ready %.3fs after process start; API on %s",
                 self.identity.display_id, _seconds_since_process_start(), self.api_url)

    async def _start_service(self, nursery: trio.Nursery, name: str,
                             run: Callable[..., Awaitable[None]], *, priority: int = 50,
                             timeout: float | None = None) -> Any:
        """Start a long-running service that the shutdown stops (priority, timeout: its stop)."""
        return await self.shutdown.start_service(nursery, name, run, priority=priority,
                                                 timeout=timeout)

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
        updated, changed = self.config.with_reloadable(new)
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
        self.config = updated
        self.settings = self.config.settings
        set_level(self.settings.log.level)
        for check in self.health.checks.values():
            health = self.settings.health
            self.health.update(check.name, interval=health.interval, timeout=health.timeout,
                               grace_period=health.grace_period)
        return {"applied": [k.dotted for k in changed if k.reloadable],
                "restart_needed": [k.dotted for k in changed if not k.reloadable]}

    # --- operator requests (API) --------------------------------------------------------------

    async def join(self, address: tuple[str, int]) -> str | None:
        """Dial a peer now and keep it (as a bootstrap peer); membership spreads the rest.

        Returns the display ID of the node that answered within 10 s, or None (dialling goes
        on with backoff).
        """
        return None if self.manager is None else await join(self.manager, address)

    def leave(self) -> None:
        """Leave gracefully, as on SIGTERM: ``left`` is announced, then the process exits 0."""
        self.shutdown.request("leave requested over the API")

    def force_leave(self, node_id: bytes) -> dict[str, Any]:
        """Mark a dead or retired peer departed everywhere.

        Raises:
            BzzzError: no such member, or it is this node.
        """
        if self.membership is None:
            raise BzzzError("peering is not running")
        self.membership.force_leave(node_id)
        log.info("peer %s forced out by an operator", short_id(node_id))
        return {"node_id": format_node_id(node_id), "status": "left"}

    # --- the runtime file ---------------------------------------------------------------------

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


def run_node(node: Node) -> int:
    """Run ``node`` under trio and return the exit code (for the CLI and test harnesses)."""
    # A short time slice: woken by a peer's message, the event loop waits less for the CPU
    # behind other work (see lifecycle/slice.py). Before trio starts: its threads inherit it.
    request_short_slice()
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
