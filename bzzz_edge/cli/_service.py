"""Commands around the node rather than in it: install-service, uninstall-service, cluster.

Does I/O: writes and removes the systemd unit, runs systemctl when systemd is running, starts
node processes for a local cluster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BzzzError
from ..lifecycle.service import (
    DEFAULT_DATA_DIR,
    UNIT_NAME,
    data_dir_problem,
    limit_nofile,
    location_problem,
    render_unit,
)
from ._common import config_from

if TYPE_CHECKING:
    from ..cluster import LocalCluster

__all__ = ["cmd_cluster", "cmd_install_service", "cmd_uninstall_service"]

_SYSTEM_UNIT_DIR = "/etc/systemd/system"


def _program() -> tuple[str, list[Path]]:
    """How the service should start this installation, and the files it needs to reach."""
    script = Path(sys.executable).parent / "bzzz-edge"
    exe = str(script) if script.exists() else shutil.which("bzzz-edge") or ""
    command = exe or f"{sys.executable} -m bzzz_edge"
    needed = [Path(exe or sys.executable).absolute(), Path(sys.prefix),
              Path(os.path.realpath(sys.executable)), Path(__file__).resolve().parent.parent]
    return command, needed


def _unit_dir(args: argparse.Namespace) -> Path:
    unit_dir = Path(args.unit_dir)
    if not unit_dir.is_dir():
        raise BzzzError(f"unit dir {unit_dir} does not exist; is systemd installed? "
                        "(or pass --unit-dir)")
    if not os.access(unit_dir, os.W_OK):
        raise BzzzError(f"cannot write to {unit_dir}: permission denied; run it as root "
                        f"(sudo {sys.argv[0]} {args.command})")
    return unit_dir


def _systemd_manages(unit_dir: Path) -> bool:
    """Whether a running systemd loads units from ``unit_dir`` (not a test's or a chroot's)."""
    return (unit_dir == Path(_SYSTEM_UNIT_DIR) and Path("/run/systemd/system").is_dir()
            and shutil.which("systemctl") is not None)


def cmd_install_service(args: argparse.Namespace) -> int:
    config = config_from(args)
    command, needed = _program()
    data_dir = Path(args.data_dir).resolve() if args.data_dir else Path(DEFAULT_DATA_DIR)
    # Refused even with --print: wherever that unit goes, the service could not see its state.
    problem = data_dir_problem(data_dir)
    if problem:
        raise BzzzError(f"the service could not use this data dir: {problem}")
    unit = render_unit(command, data_dir=str(data_dir),
                       nofile=limit_nofile(config["network.max_connections"]))
    if args.print:
        sys.stdout.write(unit)
        return 0
    unit_dir = _unit_dir(args)
    problem = location_problem(needed)
    if problem:
        raise BzzzError(f"the service could not start this installation: {problem}")
    target = unit_dir / UNIT_NAME
    tmp = unit_dir / f".{UNIT_NAME}.tmp"
    try:
        tmp.write_text(unit)
        tmp.chmod(0o644)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BzzzError(f"cannot write {target}: {exc.strerror}") from None
    print(f"wrote {target}")
    print("now run: systemctl daemon-reload && systemctl enable --now bzzz-edge")
    return 0


def cmd_uninstall_service(args: argparse.Namespace) -> int:
    unit_dir = _unit_dir(args)
    target = unit_dir / UNIT_NAME
    if not target.exists():
        raise BzzzError(f"no unit installed at {target}")
    if _systemd_manages(unit_dir):
        # Stop and disable while systemd still knows the unit.
        subprocess.run(["systemctl", "disable", "--now", UNIT_NAME], check=False)
    try:
        target.unlink()
    except OSError as exc:
        raise BzzzError(f"cannot remove {target}: {exc.strerror}") from None
    if _systemd_manages(unit_dir):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    print(f"removed {target}; the node's state in /var/lib/bzzz-edge is kept "
          "(remove /var/lib/private/bzzz-edge to forget this node)")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    import tempfile

    from ..cluster import LocalCluster

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Shells start background jobs with SIGINT ignored, and Python then keeps it ignored:
    # install the handler for SIGINT too, and SIGTERM stops the cluster the same way.
    extra = _node_args(args)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    made = args.dir is None
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bzzz-cluster-"))
    try:
        return _run_cluster(LocalCluster(base, args.nodes, extra_args=extra), base, args.nodes,
                            made)
    finally:
        if made:
            shutil.rmtree(base, ignore_errors=True)


def _node_args(args: argparse.Namespace) -> list[str]:
    """The options every node of ``cluster`` is started with: ``--config``, ``--set`` and
    ``--log-level`` as given (checked here first, so a bad key fails before any node starts).

    Raises:
        BzzzError: an option that cannot apply to the cluster's nodes; ConfigError: a bad key.
    """
    if args.data_dir is not None:
        raise BzzzError("cluster: --data-dir does not apply (each node has its own under --dir)")
    if args.log_format is not None:
        raise BzzzError("cluster: --log-format does not apply (the nodes log JSON to "
                        "<dir>/nodeN.log)")
    config_from(args)
    extra = ["--config", str(Path(args.config).resolve())] if args.config else []
    for item in args.set or ():
        extra += ["--set", item]
    if args.log_level is not None:
        extra += ["--log-level", args.log_level]
    return extra


def _run_cluster(cluster: LocalCluster, base: Path, size: int, made: bool) -> int:
    try:
        began = time.monotonic()
        cluster.start()
        cluster.wait_for_mesh(timeout=30 + 2 * size)
        where = "a temporary dir, removed at exit" if made else "kept"
        print(f"{size} nodes in a full mesh after {time.monotonic() - began:.2f}s "
              f"(data and logs in {base}, {where})")
        for node in cluster.nodes:
            print(f"  node{node.index}  {node.short_id}  API {node.api}  "
                  f"peers port {node.peer_port}")
        print("Ctrl-C stops them all.", flush=True)
        for node in cluster.nodes:
            assert node.process is not None
            node.process.wait()
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        # A second signal must not cut stop() short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        codes = cluster.stop()
    print("exit codes:", " ".join(str(c) for c in codes))
    return 0 if all(c == 0 for c in codes) else 1
