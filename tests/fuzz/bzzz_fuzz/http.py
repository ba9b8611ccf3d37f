"""Target for the HTTP API: the node's real Starlette app, driven in-process through ASGI.

The node is a real ``Node`` built from a data dir made by ``bzzz-edge init`` (not started: the
app only reads its health registry, metrics and info). Each input becomes one request: method,
path, query, headers (authorization among them), a body in chunks, with or without an API
token. The app must answer every request without raising and without a 5xx other than the 503
the health endpoints use, and with a token set it must answer 401 exactly when the header is
not ``Bearer <token>``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import trio
from starlette.applications import Starlette

from bzzz_edge.api import create_app
from bzzz_edge.cli import main as cli_main
from bzzz_edge.config import load_config
from bzzz_edge.node import Node

from .engine import Reader, Target

__all__ = ["TARGETS"]

TOKEN = "fuzz-token-0123456789"
_TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "X" * 300)
_PATHS = (b"/", b"/health", b"/health/live", b"/health/ready", b"/health/checks", b"/metrics",
          b"/api/v1/node", b"/api/v1/peers", b"/api/v1/node/", b"//health", b"/health/../metrics",
          b"/%2e%2e/%2F", b"/%00", b"/" + b"a" * 5000, b"*", b"/%C3%A9/%E2%98%83", b"/%ff%fe",
          b"/health%2F", b"/api/v1/peers/", b"/ucxi/v1/ucxl%3A%2F%2Fa%3Ab%40c%3Ad%2F%2A%5E%2Fx",
          b"/ucxi/v1/ucxl://a:b@c:d/*^/x%2e%2e", b"/ucxi/v1/", b"/ucxi/v1/announce",
          b"/ucxi/v1/%ff", b"/api/v1/store",
          # What the server answers on its fast path (a POST with a Content-Length) as well as
          # through the app: task commands and proposals.
          b"/api/v1/tasks", b"/api/v1/tasks/t1/claim", b"/api/v1/tasks/t1/complete",
          b"/api/v1/tasks/%74%31/claim", b"/api/v1/coordination/propose",
          b"/api/v1/coordination/propose/", b"/api/v1/topics/a%2Fb/messages")
_HEADER_NAMES = (b"authorization", b"host", b"content-length", b"content-type",
                 b"transfer-encoding", b"cookie", b"accept", b"x-forwarded-for", b"connection")
_AUTH = (b"Bearer " + TOKEN.encode(), b"bearer " + TOKEN.encode(), b"Bearer " + TOKEN.encode()
         + b" ", b"Bearer", b"", b"Basic Zm9vOmJhcg==", b"Bearer " + b"\xff" * 21, b"Bearer  "
         + TOKEN.encode(), b"Bearer " + TOKEN.encode()[:-1])


@functools.cache
def _apps() -> tuple[Starlette, Starlette]:
    """The app without and with a token, around one real, unstarted node."""
    data_dir = Path(_tmp.name) / "node"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["init", "--data-dir", str(data_dir)]) == 0
    config = load_config(flags={"node.data_dir": str(data_dir)}, environ={})
    node = Node.load(config)
    return create_app(node), create_app(node, token=TOKEN)


_tmp = tempfile.TemporaryDirectory(prefix="bzzz-fuzz-http-")


def _vchar(raw: bytes) -> bytes:
    """What h11 lets through in a request target: visible ASCII only."""
    return bytes(0x21 + b % 94 for b in raw)


def request_scope(r: Reader) -> tuple[dict[str, Any], list[bytes]]:
    """An ASGI scope as hypercorn builds it from an HTTP/1.1 request h11 accepted."""
    flags = r.byte()
    if flags & 1:
        method = _METHODS[r.byte() % len(_METHODS)]
    else:  # any token characters
        method = "".join(_TCHAR[b % len(_TCHAR)] for b in r.take(r.byte() % 12)) or "GET"
    raw_path = _PATHS[r.byte() % len(_PATHS)] if flags & 2 else b"/" + _vchar(r.take(r.byte() % 64))
    headers = []
    for _ in range(r.byte() % 6):
        name = _HEADER_NAMES[r.byte() % len(_HEADER_NAMES)] if r.byte() & 1 else "".join(
            _TCHAR[b % len(_TCHAR)] for b in r.take(1 + r.byte() % 16)).lower().encode()
        if name == b"authorization" and r.byte() & 1:
            value = _AUTH[r.byte() % len(_AUTH)]
        else:  # field-vchar and obs-text, spaces inside
            value = bytes(b if b >= 0x80 else 0x20 + b % 95 for b in r.take(r.byte() % 48)).strip()
        headers.append((name, value))
    query = _vchar(r.take(r.byte() % 32))
    body = r.rest()
    cut = flags % (len(body) + 1)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method.upper(), "scheme": "http", "root_path": "", "raw_path": raw_path,
        "path": unquote(raw_path.decode("ascii")), "query_string": query,
        "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
    }
    return scope, [body[:cut], body[cut:]]


async def _call(app: Starlette, scope: dict[str, Any], chunks: list[bytes]) -> list[Any]:
    sent: list[Any] = []
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await trio.sleep_forever()  # the client is still connected: no disconnect to report
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(10):
        await app(scope, receive, send)
    return sent


def http(data: bytes) -> None:
    r = Reader(data)
    with_token = r.byte() & 1
    scope, chunks = request_scope(r)
    plain, guarded = _apps()
    sent = trio.run(_call, guarded if with_token else plain, scope, chunks)
    assert sent and sent[0]["type"] == "http.response.start", sent[:1]
    status = sent[0]["status"]
    # 503 from health endpoints, and from those of the store, tasks, coordination and topics:
    # this node is not started (no store, no coordinator, no pub/sub).
    assert status < 500 or (status == 503 and scope["path"].startswith(
        ("/health", "/ucxi/v1", "/api/v1/store", "/api/v1/tasks", "/api/v1/coordination",
         "/api/v1/topics"))), status
    if with_token:
        given = dict(scope["headers"]).get(b"authorization", b"")
        assert (status == 401) == (given != b"Bearer " + TOKEN.encode()), (status, given)
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)


@functools.cache
def _http_seeds() -> list[bytes]:
    auth = b"\x01" + b"Bearer " + TOKEN.encode()
    return [
        b"\x00\x03\x00\x01\x00",  # GET / without a token
        b"\x01\x03\x00\x05\x01\x01\x00\x00" + auth,
        b"\x01\x03\x06\x05\x02\x01\x00\x01\x00\x00",
        b"\x00\x02\x04POST\x02\x01\x03\x05application/json\x04a=1&{\"x\": [1, 2]}",
    ]


TARGETS = [Target("http", http, _http_seeds)]
