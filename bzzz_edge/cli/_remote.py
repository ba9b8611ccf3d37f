"""Commands that talk to a running node over its HTTP API: status, peers, join, leave,
force-leave, reload, monitor. Does I/O (HTTP through ``NodeApi``).

Every one takes ``--api URL`` (default: the node of ``--data-dir``, from its runtime file) and
``--token`` (or ``BZZZ_EDGE_API_TOKEN``, or ``api.token_file``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..errors import BzzzError
from ._common import NodeApi, error_text

__all__ = ["cmd_force_leave", "cmd_join", "cmd_leave", "cmd_monitor", "cmd_peers", "cmd_reload",
           "cmd_status"]


def _status_once(api: NodeApi, as_json: bool) -> int:
    info = api.get("/api/v1/node")
    code, checks = api.call("GET", "/health/checks")
    if as_json:
        print(json.dumps({"node": info, "health": checks}, indent=2), flush=True)
        return 0 if code == 200 else 1
    now = time.time()
    print(f"node      {info['node_id']} ({info['name']})")
    print(f"status    {checks['status']}, {'ready' if info['ready'] else 'not ready'}, "
          f"up {info['uptime_s']:.0f}s, pid {info['pid']}")
    print(f"peers     {info['alive_peers']} alive, {info.get('connected_peers', 0)} connected")
    print(f"api       {info['api']}")
    coord = info.get("coordination")
    if coord:
        print(f"coord     {coord['leader'] or 'none'} (term {coord['term']}, commit index "
              f"{coord['commit_index']}, this node {coord['state']})")
    store = info.get("store")
    if store:
        print(f"store     {store['addresses']} addresses, {store['versions']} versions, "
              f"{store['blobs']} blobs, {store['raw_bytes']} bytes raw in "
              f"{store['stored_bytes']} stored (ratio {store['ratio']}), map "
              f"{store['map_used'] // 2**20}/{store['map_size'] // 2**20} MiB"
              + (", FULL: writes refused" if store["full"] else ""))
    print(f"version   {info['version']}  " +
          " ".join(f"{k}={v}" for k, v in info["implementations"].items()))
    for name, check in checks["checks"].items():
        age = f"{now - check['last_run']:.0f}s ago" if check.get("last_run") else "not run"
        print(f"  {name:<8} {check['status']:<8} {check['message']} ({age})")
    sys.stdout.flush()
    return 0 if code == 200 else 1


def cmd_status(args: argparse.Namespace) -> int:
    api = NodeApi(args)
    if args.watch is None:
        return _status_once(api, args.json)
    clear = sys.stdout.isatty() and not args.json
    try:
        while True:
            if clear:
                sys.stdout.write("\x1b[H\x1b[2J")
            try:
                _status_once(api, args.json)
            except BzzzError as exc:  # the node restarting is worth watching, not an exit
                print(f"bzzz-edge: {exc}", flush=True)
            if not clear:
                print(flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def cmd_peers(args: argparse.Namespace) -> int:
    peers = NodeApi(args).get("/api/v1/peers")["peers"]
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


def _post(api: NodeApi, path: str, body: Any = None) -> tuple[int, Any]:
    return api.call("POST", path, {} if body is None else body)


def cmd_join(args: argparse.Namespace) -> int:
    status, body = _post(NodeApi(args), "/api/v1/join", {"address": args.address})
    if status == 400:
        raise BzzzError(error_text(body, status))
    if status != 200:
        print(f"bzzz-edge: {error_text(body, status)}", file=sys.stderr)
        return 1
    print(f"joined {body['joined']} at {body['address']}")
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    api = NodeApi(args)
    status, body = _post(api, "/api/v1/leave")
    if status != 202:
        raise BzzzError(error_text(body, status))
    # Like `serf leave`: return once the node has told its peers and stopped answering.
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            api.call("GET", "/health/live", timeout=2)
        except BzzzError:
            print("left the cluster; the node has stopped")
            return 0
        time.sleep(0.1)
    print(f"bzzz-edge: the node still answers {args.timeout:g}s after leaving", file=sys.stderr)
    return 1


def cmd_force_leave(args: argparse.Namespace) -> int:
    status, body = _post(NodeApi(args), "/api/v1/force-leave", {"node": args.node})
    if status != 200:
        raise BzzzError(error_text(body, status))
    print(f"{body['node_id']} marked as left; the news spreads to every node "
          "(a node that is in fact alive will refute it)")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    status, body = _post(NodeApi(args), "/api/v1/reload")
    if status != 200:
        raise BzzzError(error_text(body, status))
    applied, restart = body.get("applied", []), body.get("restart_needed", [])
    done = f"applied {', '.join(applied)}" if applied else "nothing to apply"
    print(f"config reloaded: {done}")
    if restart:
        print(f"changed but needing a restart: {', '.join(restart)}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    try:
        for line in NodeApi(args).stream(f"/api/v1/monitor?level={args.level}"):
            print(line if args.json else _as_text(line), flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def _as_text(line: str) -> str:
    try:
        entry = json.loads(line)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry["ts"]))
        millis = int(entry["ts"] * 1000) % 1000
        return (f"{stamp}.{millis:03d}Z {entry['level'].upper():<7} "
                f"{entry['logger']}: {entry['msg']}")
    except (ValueError, KeyError, TypeError, AttributeError):
        return line
