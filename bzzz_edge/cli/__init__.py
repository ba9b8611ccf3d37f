"""The ``bzzz-edge`` command line: the parser, and ``main`` turning every user error into one
line on stderr and exit code 2, never a traceback.

The commands live in ``_local`` (the data dir: init, run, id, config, network-key, version),
``_remote`` (a running node's API: status, peers, join, leave, force-leave, reload, monitor),
``_coordinator`` (coordinator), ``_tasks`` (task announce, list, show, claim, ...),
``_pubsub`` (pub, sub), ``_service`` (install-service, uninstall-service, cluster), ``_ucxl``
(ucxl ..., store optimize), ``_log`` (log show, log verify) and ``_agents`` (agents).
Does I/O.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import BzzzError
from ..lifecycle.exitcodes import ExitCode
from ..logs import LEVELS

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["main"]


def _config_from(args: argparse.Namespace) -> Config:
    """The config of ``args``; kept for tests/_harness, which builds a node the way `run` does."""
    from ._common import config_from

    return config_from(args)


Handler = Callable[[argparse.Namespace], int]


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (identity, config, store)")
    common.add_argument("--config", help="config file (default <data-dir>/config.toml)")
    common.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override any config key (repeatable)")
    common.add_argument("--log-level", choices=list(LEVELS))
    common.add_argument("--log-format", choices=["auto", "text", "json"])
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--api", metavar="URL",
                        help="the node's API (default: the node of --data-dir)")
    remote.add_argument("--token", help="API token (better: BZZZ_EDGE_API_TOKEN or "
                        "api.token_file, which stay out of the process list)")
    return common, remote


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``command="run"`` one that knows only init and run.

    Why the short one: a node runs for days in the process that parsed ``run``, and the other
    commands' modules and parsers (HTTP client, bench, log reader...: about 1 MB) would stay
    in it for nothing.
    """
    # The command modules load here, not at the top: they import _native, which refuses a bad
    # BZZZ_EDGE_PURE, and main() must be there to turn that into one line.
    from ._local import cmd_config, cmd_id, cmd_init, cmd_network_key_export, cmd_run, cmd_version

    common, remote = _parsers()
    parser = argparse.ArgumentParser(
        prog="bzzz-edge", description="Peer-to-peer coordination node for AI agents.")
    parser.add_argument("--version", action="version", version=f"bzzz-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Handler, text: str, *, talks: bool = False) -> argparse.ArgumentParser:
        parents = [common, remote] if talks else [common]
        p = sub.add_parser(name, parents=parents, help=text, description=text)
        p.set_defaults(func=fn)
        return p

    p = add("init", cmd_init, "create the identity, network key and config file")
    p.add_argument("--force", action="store_true", help="replace an existing identity")
    p.add_argument("--network-key-file", help="join an existing network with this key file")
    p = add("run", cmd_run, "run the node in the foreground (as systemd does)")
    p.add_argument("--init", action="store_true", help="initialise the node first if needed")
    p.add_argument("--api-listen", help="HTTP API address (config api.listen)")
    p.add_argument("--listen", help="peer address (config network.listen)")
    if command == "run":
        return parser

    from ._agents import add_agents_command
    from ._bench import add_bench_command
    from ._coordinator import cmd_coordinator
    from ._dht import add_dht_commands
    from ._log import add_log_parser, cmd_log
    from ._pubsub import cmd_pub, cmd_sub
    from ._remote import (
        cmd_force_leave,
        cmd_join,
        cmd_leave,
        cmd_monitor,
        cmd_peers,
        cmd_reload,
        cmd_status,
    )
    from ._service import cmd_cluster, cmd_install_service, cmd_uninstall_service
    from ._tasks import add_task_commands
    from ._ucxl import add_ucxl_commands

    add("version", cmd_version, "show the version and which hot paths are compiled")
    add("id", cmd_id, "print this node's ID")
    p = add("status", cmd_status, "show the running node's status", talks=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="SECONDS",
                   help="repeat every SECONDS (default 2) until Ctrl-C")
    p = add("peers", cmd_peers, "list the running node's peers", talks=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("coordinator", cmd_coordinator, "show the coordinator, term, voters and learners",
            talks=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("join", cmd_join, "dial a peer now (HOST:PORT of its peer port)", talks=True)
    p.add_argument("address", metavar="HOST:PORT")
    p = add("leave", cmd_leave, "stop the node gracefully, telling peers it left", talks=True)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    p = add("force-leave", cmd_force_leave, "mark a dead or retired peer as left everywhere",
            talks=True)
    p.add_argument("node", metavar="NODE_ID")
    add("reload", cmd_reload, "re-read the node's config (as SIGHUP does)", talks=True)
    p = add("monitor", cmd_monitor, "stream the node's log lines until Ctrl-C", talks=True)
    p.add_argument("--level", choices=list(LEVELS), default="info",
                   help="lowest level to show (default info)")
    p.add_argument("--json", action="store_true", help="JSON lines as the node sends them")
    p = add("pub", cmd_pub, "publish a message on a topic through the running node", talks=True)
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("message", metavar="MESSAGE", nargs="?", help="the message (UTF-8 text)")
    p.add_argument("--file", metavar="F", help="send the bytes of file F instead ('-': stdin)")
    p = add("sub", cmd_sub, "print the messages a topic delivers, until Ctrl-C", talks=True)
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument("--count", type=int, metavar="N", help="exit 0 after N messages")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="exit 1 when S seconds pass before that")
    p = add("log", cmd_log, "show or verify a node's signed log (verify works on a stopped "
            "node's data dir)", talks=True)
    add_log_parser(p)
    p = add("cluster", cmd_cluster, "run a local cluster of N nodes on 127.0.0.1 (Ctrl-C stops)")
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    p.add_argument("--dir", help="where to keep their data (default: a temporary dir, "
                   "removed at exit); a dir used before is resumed: the same nodes")
    p = add("config", cmd_config, "show or validate the configuration")
    p.add_argument("action", choices=["show", "validate"],
                   help="show: values and sources; validate: check FILE (default the config)")
    p.add_argument("file", nargs="?", metavar="FILE", help="config file to validate")
    p = add("network-key", cmd_network_key_export, "export the network key to join other nodes")
    p.add_argument("action", choices=["export"])
    p.add_argument("--output", help="write to this file (0600) instead of stdout")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    add_ucxl_commands(sub, [common, remote])
    add_dht_commands(sub, [common, remote])
    add_task_commands(sub, [common, remote])
    add_agents_command(sub, [common, remote])
    add_bench_command(sub, [common, remote])
    for name, fn, text in (("install-service", cmd_install_service, "install the systemd unit"),
                           ("uninstall-service", cmd_uninstall_service,
                            "stop, disable and remove the systemd unit")):
        p = add(name, fn, text)
        p.add_argument("--unit-dir", default="/etc/systemd/system")
        if fn is cmd_install_service:
            p.add_argument("--print", action="store_true",
                           help="print the unit instead of installing it")
    return parser


def _check_environment() -> None:
    # _native reads BZZZ_EDGE_PURE when imported, before any config, and raises ConfigError for
    # a value it does not know ("yes", "true"); importing it first makes that the one line.
    from .. import _native  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    try:
        _check_environment()
    except BzzzError as exc:
        print(f"bzzz-edge: error: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    words = sys.argv[1:] if argv is None else list(argv)
    # The command comes first (the shared options belong to each command), so this is exact.
    args = _parser("run" if words[:1] == ["run"] else None).parse_args(argv)
    try:
        return int(args.func(args))
    except BzzzError as exc:
        print(f"bzzz-edge: error: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except OSError as exc:  # a file system refusal nobody anticipated: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"bzzz-edge: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
