"""``bzzz-edge dht status|find ADDRESS|providers ADDRESS|routes``: the running node's DHT, for
debugging. Each asks the node's API (``/api/v1/dht...``). Does I/O (HTTP, stdout).

Exit codes as the ``ucxl`` commands: 0 done, 1 the node answered "no" (DHT not running),
2 a malformed address or another usage error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._ucxl import _address, _Client, _run

__all__ = ["add_dht_commands"]


def add_dht_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``dht ...`` on the top-level subparsers ``sub``."""
    dht = sub.add_parser("dht", help="the running node's DHT: status, find, providers, routes",
                         description="the running node's Kademlia DHT, for debugging")
    verbs = dht.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, fn: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, parents=parents, help=text,
                                                      description=text)
        p.set_defaults(func=lambda args: _run(fn, args))
        p.add_argument("--json", action="store_true", help="the node's answer as JSON")
        return p

    verb("status", _status, "routing table, records held, RPCs in flight, counters")
    p = verb("find", _find, "look an address's key up in the network (even when this node "
             "holds it): closest nodes, hops, records found")
    p.add_argument("address", metavar="ADDRESS")
    p = verb("providers", _providers, "the nodes that announced holding an address")
    p.add_argument("address", metavar="ADDRESS")
    verb("routes", _routes, "every contact in the routing table, nearest bucket first")


def _ask(args: argparse.Namespace, path: str, **query: str) -> Any:
    if query:
        path += "?" + "&".join(f"{k}={_quote(v)}" for k, v in query.items())
    return _Client(args).json("GET", None, path=path)


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text, safe="")


def _print(args: argparse.Namespace, answer: Any, lines: list[str]) -> int:
    print(json.dumps(answer, indent=2) if args.json else "\n".join(lines))
    return 0


def _status(args: argparse.Namespace) -> int:
    s = _ask(args, "/api/v1/dht")
    counters = ", ".join(f"{k} {v}" for k, v in sorted(s.get("counters", {}).items()))
    return _print(args, s, [
        f"routing table: {s['routing_table']} contacts (deepest bucket {s['deepest_bucket']})",
        f"records held:  {s['records_held']} (own {s['own_records']})",
        f"in flight:     {s['pending_rpcs']} RPCs, {s['operations']} operations",
        f"lookups:       {s['recent_successes']} of the last {s['recent_lookups']} succeeded",
        f"counters:      {counters or 'none'}"])


def _find(args: argparse.Namespace) -> int:
    f = _ask(args, "/api/v1/dht/find", address=_address(args.address))
    lines = [f"key {f['key']}: {f['hops']} hops, {f['answered']}/{f['queried']} answered"
             + (", timed out" if f["timed_out"] else "")]
    lines += [f"  record by {r['publisher'][:15]} v{r['version']} "
              + (f"{r['value_bytes']} bytes inline" if r["value_bytes"] else
                 f"hash {str(r['content_hash'])[:16]}") for r in f["records"]]
    lines += [f"  close: {c['node_id'][:15]} {c['address']}" for c in f["closest"]]
    return _print(args, f, lines)


def _providers(args: argparse.Namespace) -> int:
    p = _ask(args, "/api/v1/dht/providers", address=_address(args.address))
    return _print(args, p, p["providers"] or ["no providers found"])


def _routes(args: argparse.Namespace) -> int:
    r = _ask(args, "/api/v1/dht/routes")
    return _print(args, r, [f"bucket {row['bucket']:3d}  {row['node_id'][:15]}  "
                            f"{row['host']}:{row['port']}" for row in r["routes"]])
