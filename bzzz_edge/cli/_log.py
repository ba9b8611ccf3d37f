"""`bzzz-edge log show` and `log verify`: a node's signed log, read from its data dir or asked
of the running node. Does I/O (LMDB read-only, or HTTP through ``NodeApi``).

``log verify`` reads the data dir itself (whether or not the node runs: LMDB lets a reader in
beside the running writer, and a verifier should not have to trust the process it checks);
with ``--api URL`` it asks that node instead. ``log show`` asks the running node of the data
dir (or ``--api``), and reads the data dir when no node runs there.
Exit codes: 0 the log holds; 1 it does not (the first bad entry is named); 2 a user error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any
from urllib.parse import quote

from ..errors import BzzzError
from ..identity import Identity, parse_node_id
from ..signedlog import report
from ..signedlog.storage import LogReader, default_workers, open_readonly
from ._common import NodeApi, config_from, error_text

__all__ = ["add_log_parser", "cmd_log"]


def add_log_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "verify"],
                   help="show: the last entries; verify: check chain, signatures, signed root")
    p.add_argument("--node", metavar="ID", help="whose log (default: this node's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="show: how many of the last entries (default 20)")


def cmd_log(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise BzzzError(f"--limit {args.limit}: expected 0 or more")
    author = parse_node_id(args.node) if args.node else None
    if args.action == "verify":
        result = (_over_api(args, "/api/v1/log/verify", author) if args.api
                  else _offline(args, author,
                                lambda r, a: report.verify(r, a, workers=default_workers())))
        return _print_verify(result, args.json)
    path = f"/api/v1/log?limit={args.limit}"
    result = _over_api(args, path, author, fallback=not args.api)
    if result is None:  # no node runs on this data dir: read it
        result = _offline(args, author, lambda r, a: report.show(r, a, args.limit))
    _print_show(result, args.json)
    return 0


def _over_api(args: argparse.Namespace, path: str, author: bytes | None, *,
              fallback: bool = False) -> Any:
    """The node's answer; with ``fallback``, None when no node runs there (no runtime file,
    or nothing answers at its address) instead of an error."""
    if author is not None:
        path += ("&" if "?" in path else "?") + "node=" + quote(args.node)
    try:
        api = NodeApi(args)
        status, body = api.call("GET", path, timeout=600.0)
    except BzzzError:
        if fallback:
            return None
        raise
    if status >= 400:
        raise BzzzError(f"log: {error_text(body, status)}")
    return body


def _offline(args: argparse.Namespace, author: bytes | None, fn: Any) -> Any:
    config = config_from(args)
    if author is None:
        author = Identity.load(config.identity_file).node_id
    env, dbs = open_readonly(config.data_dir / "store")
    try:
        with env.begin() as txn:
            return fn(LogReader(txn, dbs), author)
    finally:
        env.close()


def _print_verify(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    elif result["ok"]:
        print(f"log of {result['node_id']}: {result['length']} entries verified "
              f"(hash chain, every signature, signed Merkle root {result['root'][:16]}...)")
    else:
        print(f"log of {result['node_id']}: entry {result['index']} is bad: {result['reason']}",
              file=sys.stderr)
    return 0 if result["ok"] else 1


def _print_show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    state = "CORRUPT (fork evidence kept)" if result["corrupt"] else "ok"
    print(f"log of {result['node_id']}: {result['length']} entries, root "
          f"{result['root'][:16]}..., {state}")
    for entry in result["entries"]:
        if "error" in entry:
            print(f"{entry['index']:>8}  damaged: {entry['error']}")
            continue
        when = datetime.datetime.fromtimestamp(entry["timestamp_ms"] / 1000, datetime.UTC)
        data = json.dumps(entry["data"], sort_keys=True, separators=(",", ":"))
        print(f"{entry['index']:>8}  {when:%Y-%m-%d %H:%M:%S}  {entry['type']:<18} {data}")
    sys.stdout.flush()
