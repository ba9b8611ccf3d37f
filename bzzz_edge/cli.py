"""The ``bzzz-edge`` command line: init, run, status, config, network-key, version, services.
Does I/O.

Each subcommand is a small function taking the parsed arguments and returning an exit code;
errors the user can fix (config, identity) are one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from . import __version__, _native
from .config import CONFIG_FILE_NAME, Config, config_template, load_config
from .errors import BzzzError
from .identity import (
    Identity,
    generate_network_key,
    load_network_key,
    network_fingerprint,
    write_network_key,
)
from .lifecycle.shutdown import ExitCode
from .logs import setup_logging

__all__ = ["main"]

log = logging.getLogger(__name__)


def _config_from(args: argparse.Namespace) -> Config:
    flags: dict[str, Any] = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise BzzzError(f"--set {item!r}: expected section.key=value")
        flags[key.strip()] = value
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            flags[key] = value
    return load_config(flags=flags, config_file=args.config)


# Named flags that are shortcuts for config keys (every key is also reachable with --set).
_FLAG_KEYS = {
    "data_dir": "node.data_dir",
    "log_level": "log.level",
    "log_format": "log.format",
    "api_listen": "api.listen",
    "listen": "network.listen",
}


def _init_node(config: Config, *, force: bool, network_key_file: str | None) -> Identity:
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if config.identity_file.exists() and not force:
        raise BzzzError(
            f"{config.identity_file} already exists (node {_existing_id(config)}); "
            "use --force to replace this node's identity"
        )
    # Read the key to join before writing anything, so a wrong file leaves nothing behind.
    key = load_network_key(Path(network_key_file), check_mode=False) if network_key_file else None
    identity = Identity.generate()
    identity.save(config.identity_file)
    if key is not None:
        write_network_key(config.network_key_file, key)
    elif not config.network_key_file.exists():
        write_network_key(config.network_key_file, generate_network_key())
    config_path = config.file or data_dir / CONFIG_FILE_NAME
    if not config_path.exists():
        config_path.write_text(config_template())
    return identity


def _existing_id(config: Config) -> str:
    try:
        return Identity.load(config.identity_file).display_id
    except BzzzError:
        return "unreadable"


def cmd_init(args: argparse.Namespace) -> int:
    config = _config_from(args)
    identity = _init_node(config, force=args.force, network_key_file=args.network_key_file)
    fingerprint = network_fingerprint(load_network_key(config.network_key_file))
    print(f"node ID        {identity.display_id}")
    print(f"data dir       {config.data_dir}")
    print(f"network        {fingerprint} (key in {config.network_key_file})")
    print("Other nodes join this network with: bzzz-edge init --network-key-file <copy of the key>")
    print("Start the node with: bzzz-edge run")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _config_from(args)
    setup_logging(config["log.level"], config["log.format"], config.secrets())
    from .node import Node, run_node  # trio and friends load only for commands that need them

    if args.init and not config.identity_file.exists():
        identity = _init_node(config, force=False, network_key_file=None)
        log.info("initialised a new node %s in %s", identity.display_id, config.data_dir)
        config = _config_from(args)  # pick up the config file init just wrote
    return run_node(Node.load(config))


def cmd_version(args: argparse.Namespace) -> int:
    impls = _native.implementations()
    print(f"bzzz-edge {__version__} (Python {sys.version.split()[0]})")
    forced = " (forced by BZZZ_EDGE_PURE=1)" if _native.FORCED_PURE else ""
    for name, impl in impls.items():
        print(f"  {name:<6} {impl}{forced if impl == 'pure' else ''}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _config_from(args)
    print(f"# config file: {config.file or 'none'}")
    rows = config.describe()
    width = max(len(key) + len(value) for key, value, _ in rows) + 3
    for key, value, source in rows:
        print(f"{key} = {value}".ljust(width) + f"  # {source}")
    return 0


def cmd_network_key_export(args: argparse.Namespace) -> int:
    config = _config_from(args)
    key = load_network_key(config.network_key_file)
    if args.output:
        write_network_key(Path(args.output), key)
        print(f"network key written to {args.output} (mode 0600); copy it to the other nodes")
    else:
        sys.stdout.write(key.hex() + "\n")
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    print(Identity.load(_config_from(args).identity_file).display_id)
    return 0


def _api_get(config: Config, path: str) -> tuple[int, Any]:
    from .node import RUNTIME_FILE

    runtime = config.data_dir / RUNTIME_FILE
    try:
        base = json.loads(runtime.read_text())["api"]
    except (OSError, ValueError, KeyError):
        raise BzzzError(f"no running node found ({runtime} is missing); is it started?") from None
    request = urllib.request.Request(base + path)
    if config["api.token"]:
        request.add_header("Authorization", f"Bearer {config['api.token']}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError as exc:
        raise BzzzError(f"cannot reach the node's API at {base}: {exc}") from None


def cmd_status(args: argparse.Namespace) -> int:
    config = _config_from(args)
    _, info = _api_get(config, "/api/v1/node")
    code, checks = _api_get(config, "/health/checks")
    if args.json:
        print(json.dumps({"node": info, "health": checks}, indent=2))
        return 0 if code == 200 else 1
    print(f"node      {info['node_id']} ({info['name']})")
    print(f"status    {checks['status']}, {'ready' if info['ready'] else 'not ready'}, "
          f"up {info['uptime_s']:.0f}s, pid {info['pid']}")
    print(f"api       {info['api']}")
    print(f"version   {info['version']}  " +
          " ".join(f"{k}={v}" for k, v in info["implementations"].items()))
    for name, check in checks["checks"].items():
        print(f"  {name:<8} {check['status']:<8} {check['message']}")
    return 0 if code == 200 else 1


def cmd_peers(args: argparse.Namespace) -> int:
    _, body = _api_get(_config_from(args), "/api/v1/peers")
    peers = body["peers"]
    if args.json:
        print(json.dumps(peers, indent=2))
        return 0
    if not peers:
        print("no peers known yet")
        return 0
    print(f"{'NODE ID':<24}{'NAME':<16}{'STATUS':<9}{'INC':>5}  {'ADDRESS':<22}{'CONN':<5}SINCE")
    for p in sorted(peers, key=lambda p: (p["status"], p["name"])):
        print(f"{p['node_id'][:23]:<24}{p['name'][:15]:<16}{p['status']:<9}{p['incarnation']:>5}"
              f"  {p['address']:<22}{'yes' if p['connected'] else 'no':<5}{p['since_s']:.0f}s")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    import signal
    import tempfile
    import time

    from .cluster import LocalCluster

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM stops the cluster like Ctrl-C (shells start background jobs ignoring SIGINT).
    signal.signal(signal.SIGTERM, interrupt)

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bzzz-cluster-"))
    cluster = LocalCluster(base, args.nodes)
    try:
        began = time.monotonic()
        cluster.start()
        cluster.wait_for_mesh(timeout=30 + 2 * args.nodes)
        print(f"{args.nodes} nodes in a full mesh after {time.monotonic() - began:.2f}s "
              f"(data and logs in {base})")
        for node in cluster.nodes:
            print(f"  node{node.index}  {node.short_id}  API {node.api}  "
                  f"peers port {node.peer_port}")
        print("Ctrl-C stops them all.", flush=True)
        for node in cluster.nodes:
            assert node.process is not None
            node.process.wait()
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut stop() short
        codes = cluster.stop()
    print("exit codes:", " ".join(str(c) for c in codes))
    return 0 if all(c == 0 for c in codes) else 1


def cmd_install_service(args: argparse.Namespace) -> int:
    unit = resources.files("bzzz_edge").joinpath("data/bzzz-edge.service").read_text()
    exe = shutil.which("bzzz-edge") or f"{sys.executable} -m bzzz_edge"
    unit = unit.replace("/usr/local/bin/bzzz-edge", exe)
    if args.data_dir:
        unit = unit.replace("/var/lib/bzzz-edge", str(Path(args.data_dir).resolve()))
    if args.print:
        sys.stdout.write(unit)
        return 0
    target = Path(args.unit_dir) / "bzzz-edge.service"
    target.write_text(unit)
    print(f"wrote {target}")
    print("now run: systemctl daemon-reload && systemctl enable --now bzzz-edge")
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (identity, config, store)")
    common.add_argument("--config", help="config file (default <data-dir>/config.toml)")
    common.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override any config key (repeatable)")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    common.add_argument("--log-format", choices=["auto", "text", "json"])

    parser = argparse.ArgumentParser(
        prog="bzzz-edge", description="Peer-to-peer coordination node for AI agents.")
    parser.add_argument("--version", action="version", version=f"bzzz-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    Handler = Callable[[argparse.Namespace], int]

    def add(name: str, fn: Handler, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=fn)
        return p

    p = add("init", cmd_init, "create the identity, network key and config file")
    p.add_argument("--force", action="store_true", help="replace an existing identity")
    p.add_argument("--network-key-file", help="join an existing network with this key file")
    p = add("run", cmd_run, "run the node in the foreground (as systemd does)")
    p.add_argument("--init", action="store_true", help="initialise the node first if needed")
    p.add_argument("--api-listen", help="HTTP API address (config api.listen)")
    p.add_argument("--listen", help="peer address (config network.listen)")
    add("version", cmd_version, "show the version and which hot paths are compiled")
    add("id", cmd_id, "print this node's ID")
    p = add("status", cmd_status, "show the running node's status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("peers", cmd_peers, "list the running node's peers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("cluster", cmd_cluster, "run a local cluster of N nodes on 127.0.0.1 (Ctrl-C stops)")
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    p.add_argument("--dir", help="where to keep their data (default: a new temporary dir)")
    p = add("config", cmd_config_show, "show the effective configuration")
    p.add_argument("action", choices=["show"], help="what to do (show: values and sources)")
    p = add("network-key", cmd_network_key_export, "export the network key to join other nodes")
    p.add_argument("action", choices=["export"])
    p.add_argument("--output", help="write to this file (0600) instead of stdout")
    p = add("install-service", cmd_install_service, "install the systemd unit file")
    p.add_argument("--print", action="store_true", help="print the unit instead of installing")
    p.add_argument("--unit-dir", default="/etc/systemd/system")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BzzzError as exc:
        print(f"bzzz-edge: error: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
