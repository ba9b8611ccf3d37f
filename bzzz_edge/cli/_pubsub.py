"""``bzzz-edge pub`` and ``bzzz-edge sub``: publish through, and follow the deliveries of, the
running node. Does I/O (HTTP to the node's API; ``sub`` reads its Server-Sent Events stream).

pub TOPIC MESSAGE [--file F]
    Prints the message ID (``origin:seq``) and exits 0 once the node has accepted it; a bad
    topic or a message too large is exit 2 with one line saying why.
sub TOPIC [--json] [--count N] [--timeout S]
    Prints deliveries until Ctrl-C (exit 0), or exits 0 after N of them, or 1 when S seconds
    pass first (or the node closes the stream). ``--json``: one object a line with ``topic``,
    ``origin``, ``seq``, ``timestamp``, ``hops``, ``data`` (UTF-8 text, or null) and
    ``data_b64`` (and ``id``, ``gap``, ``missed``).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BzzzError
from ..gossip.topics import check_topic
from ._common import NodeApi, error_text

__all__ = ["cmd_pub", "cmd_sub"]


def _topic_path(topic: str, suffix: str) -> str:
    return f"/api/v1/topics/{urllib.parse.quote(topic, safe='')}/{suffix}"


def _message(args: argparse.Namespace) -> bytes:
    if (args.message is None) == (args.file is None):
        raise BzzzError("pub: give the message either as MESSAGE or with --file F, not both")
    if args.message is not None:
        return str(args.message).encode("utf-8", "surrogateescape")
    if args.file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.file).read_bytes()
    except OSError as exc:
        raise BzzzError(f"pub: cannot read {args.file}: {exc.strerror or exc}") from None


def cmd_pub(args: argparse.Namespace) -> int:
    topic = check_topic(args.topic)
    data = _message(args)
    status, body = NodeApi(args).call("POST", _topic_path(topic, "messages"),
                                      {"data_b64": base64.b64encode(data).decode("ascii")})
    if status != 200:
        raise BzzzError(error_text(body, status))
    print(body["id"], flush=True)
    return 0


def cmd_sub(args: argparse.Namespace) -> int:
    topic = check_topic(args.topic)
    if args.count is not None and args.count < 1:
        raise BzzzError("sub: --count must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise BzzzError("sub: --timeout must be more than 0 seconds")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    try:
        for event in _events(NodeApi(args), _topic_path(topic, "events"), deadline):
            print(json.dumps(event) if args.json else _as_text(event), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return 0
    except TimeoutError:
        print(f"bzzz-edge: {seen} message(s) on {topic} within {args.timeout:g}s"
              + (f", {args.count} wanted" if args.count else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    print(f"bzzz-edge: the node closed the stream of {topic}", file=sys.stderr)
    return 1


def _as_text(event: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event["timestamp"]))
    data = event["data"] if event["data"] is not None \
        else f"<{len(base64.b64decode(event['data_b64']))} bytes, not UTF-8>"
    return f"{stamp} {event['origin'][:15]}:{event['seq']} hops={event['hops']} {data}"


def _events(api: NodeApi, path: str, deadline: float | None) -> Iterator[dict[str, Any]]:
    """The JSON of each ``message`` event of the node's stream at ``path``.

    Raises:
        TimeoutError: ``deadline`` (monotonic) passed.
        BzzzError: the node is unreachable or refused the stream.
    """
    url = urllib.parse.urlsplit(api.base)
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    timeout = None if deadline is None else max(0.001, deadline - time.monotonic())
    conn = kind(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    headers = {"Accept": "text/event-stream"}
    if api.token:
        headers["Authorization"] = f"Bearer {api.token}"
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
    except TimeoutError:
        raise
    except OSError as exc:
        raise BzzzError(f"cannot reach the node's API at {api.base}: {exc.strerror or exc}"
                        ) from None
    with response:
        if response.status != 200:
            if response.status == 401:
                raise BzzzError(api._unauthorized())
            try:
                body = json.loads(response.read() or b"null")
            except ValueError:
                body = None
            raise BzzzError(error_text(body, response.status))
        yield from _parse(conn, response, deadline)


def _parse(conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
           deadline: float | None) -> Iterator[dict[str, Any]]:
    data: list[str] = []
    while True:
        if deadline is not None and conn.sock is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            conn.sock.settimeout(remaining)
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith(":"):
            if line.startswith(": subscribed"):
                print(f"bzzz-edge:{line[1:]}", file=sys.stderr, flush=True)
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []
