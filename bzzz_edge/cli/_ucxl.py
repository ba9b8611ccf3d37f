"""``bzzz-edge ucxl put|get|ls|history|rm|announce`` and ``bzzz-edge store optimize``: each asks
the running node through its API (UCXI under /ucxi/v1). Does I/O (HTTP, files, stdio).

Exit codes: 0 done; 1 the node answered "no" (unknown address or version, deleted, too large,
a refused write), with one line on stderr; 2 a malformed address (with its position) or
another usage error, as every command's usage errors are.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import BzzzError
from ..ucxl import UCXLError, parse
from ._common import NodeApi

__all__ = ["add_ucxl_commands"]

_PREFIX = "/ucxi/v1/"
_PAGE = 1000


class _Answer(Exception):
    """The node refused: exit 1 with this line."""


def add_ucxl_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``ucxl ...`` and ``store ...`` on the top-level subparsers ``sub``."""
    ucxl = sub.add_parser("ucxl", help="UCXL content on the running node: put, get, ls, "
                          "history, rm, announce", description="UCXL content on the node")
    verbs = ucxl.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, fn: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, parents=parents, help=text,
                                                      description=text)
        p.set_defaults(func=lambda args: _run(fn, args))
        return p

    p = verb("put", _put, "store a new version; prints its address with *N")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("file", nargs="?", default="-", metavar="FILE|-",
                   help="the content (default: standard input)")
    p.add_argument("--type", dest="media_type", metavar="MEDIA",
                   help="media type (default: guessed from FILE, else application/octet-stream)")
    p = verb("get", _get, "write the content of a version to standard output")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--meta", action="store_true", help="print the version's metadata (JSON)")
    p.add_argument("--local", action="store_true",
                   help="only this node's store: do not ask the network (DHT)")
    p = verb("ls", _ls, "list the latest version of every address a pattern matches")
    p.add_argument("pattern", metavar="PATTERN")
    p.add_argument("--json", action="store_true")
    p.add_argument("--deleted", action="store_true", help="include deleted addresses")
    p.add_argument("--network", action="store_true", help="ask every connected peer too, "
                   "for at most dht.list_timeout seconds")
    p = verb("history", _history, "every version of an address, oldest first")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--json", action="store_true")
    p = verb("rm", _rm, "delete (a tombstone version; history is kept)")
    p.add_argument("address", metavar="ADDRESS")
    p = verb("announce", _announce, "announce that this node holds an address")
    p.add_argument("address", metavar="ADDRESS")

    store = sub.add_parser("store", help="the node's store: optimize",
                           description="the node's store")
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("optimize", parents=parents, help="compress what is stored raw and "
                           "reclaim unreferenced blobs (safe while the node runs)")
    p.set_defaults(func=lambda args: _run(_optimize, args))


def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        return int(fn(args))
    except _Answer as exc:
        print(f"bzzz-edge: {exc}", file=sys.stderr)
        return 1


def _address(text: str) -> str:
    """Check the address here, so a malformed one is exit 2 with its position."""
    try:
        return str(parse(text))
    except UCXLError as exc:
        raise BzzzError(str(exc)) from None


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.api = NodeApi(args)

    def request(self, method: str, address: str | None, *, query: dict[str, str] | None = None,
                body: bytes | None = None, media_type: str | None = None,
                path: str | None = None) -> tuple[dict[str, str], bytes]:
        url = self.api.base + (path or _PREFIX + urllib.parse.quote(address or "", safe=""))
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, data=body, method=method)
        if media_type:
            request.add_header("Content-Type", media_type)
        if self.api.token:
            request.add_header("Authorization", f"Bearer {self.api.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if exc.code == 401:
                raise BzzzError(self.api._unauthorized()) from None
            error = _error_of(raw)
            message = str(error.get("message") or f"HTTP {exc.code}")
            if error.get("code") == "bad_address":
                raise BzzzError(message) from None
            raise _Answer(message) from None
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise BzzzError(f"cannot reach the node's API at {self.api.base}: {reason}") from None

    def json(self, *args: Any, **kwargs: Any) -> Any:
        _, raw = self.request(*args, **kwargs)
        try:
            return json.loads(raw)
        except ValueError:
            raise BzzzError(f"{self.api.base} did not answer with JSON") from None


def _error_of(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error
    return {"message": error} if isinstance(error, str) else {}


def _put(args: argparse.Namespace) -> int:
    address = _address(args.address)
    if args.file == "-":
        content = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as handle:
            content = handle.read()
    media_type = args.media_type
    if media_type is None and args.file != "-":
        media_type = mimetypes.guess_type(args.file)[0]
    version = _Client(args).json("PUT", address, body=content,
                                 media_type=media_type or "application/octet-stream")
    print(version["address"])
    return 0


def _get(args: argparse.Namespace) -> int:
    address = _address(args.address)
    client = _Client(args)
    local = {"local": "1"} if args.local else {}
    if args.meta:
        print(json.dumps(client.json("GET", address, query={"meta": "1", **local}), indent=2))
        return 0
    _, content = client.request("GET", address, query=local or None)
    sys.stdout.buffer.write(content)
    sys.stdout.buffer.flush()
    return 0


def _ls(args: argparse.Namespace) -> int:
    pattern = _address(args.pattern)
    client, items, after = _Client(args), [], ""
    while args.network:  # one answer, bounded in time: no pages
        query = {"list": "1", "network": "1", "limit": str(_PAGE),
                 **({"deleted": "1"} if args.deleted else {})}
        answer = client.json("GET", pattern, query=query)
        items = answer["items"]
        if not answer.get("complete"):
            print(f"bzzz-edge: {answer['answered']} of {answer['peers']} peers answered in time",
                  file=sys.stderr)
        break
    while not args.network:
        query = {"list": "1", "limit": str(_PAGE), **({"after": after} if after else {}),
                 **({"deleted": "1"} if args.deleted else {})}
        page = client.json("GET", pattern, query=query)
        items.extend(page["items"])
        if not page.get("next"):
            break
        after = page["next"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for item in items:
        print(_line(item))
    return 0


def _history(args: argparse.Namespace) -> int:
    answer = _Client(args).json("GET", _address(args.address), query={"history": "1"})
    if args.json:
        print(json.dumps(answer["versions"], indent=2))
        return 0
    for item in answer["versions"]:
        print(_line(item))
    return 0


def _line(item: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item["timestamp"]))
    what = "deleted" if item["deleted"] else f"{item['size']} bytes {item['media_type']}"
    return f"{item['address']}  {stamp}  {item['author'][:16]}  {what}"


def _rm(args: argparse.Namespace) -> int:
    version = _Client(args).json("DELETE", _address(args.address))
    print(f"deleted: {version['address']} (earlier versions are kept)")
    return 0


def _announce(args: argparse.Namespace) -> int:
    version = _Client(args).json("ANNOUNCE", _address(args.address))
    print(f"announced {version['address']}")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    result = _Client(args).json("POST", None, path="/api/v1/store/optimize", body=b"{}",
                                media_type="application/json")
    print(f"store optimized: {result['compressed']} blobs compressed "
          f"({result['saved_bytes']} bytes saved), {result['reclaimed']} unreferenced blobs "
          f"reclaimed ({result['reclaimed_bytes']} bytes)")
    return 0
