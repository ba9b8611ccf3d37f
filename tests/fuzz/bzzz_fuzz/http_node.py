"""Raw HTTP/1.1 requests, well-formed and mangled, against a real node's API socket.

Where the ``http`` target checks the app, this one also puts hypercorn and h11 in the path:
request lines and headers that no ASGI scope could carry, bad lengths, bare bytes. Each request
goes on its own connection; the client half-closes after sending, so an incomplete request ends
in EOF rather than a wait. A response, if any, must be well-formed HTTP with a status below 500
(503 only from the health endpoints), and 401 exactly when a well-formed request carries the
wrong token. Whether the node stayed up and logged no traceback is the caller's to check.
"""

from __future__ import annotations

import random
import re
import socket
import traceback
from urllib.parse import urlsplit

from .engine import Finding, Reader, Report, mutate
from .http import TOKEN, request_scope

__all__ = ["exchange", "fuzz_node"]

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def _render(data: bytes) -> tuple[bytes, str, bytes | None]:
    """Wire bytes of the request in ``data``, its path, and its authorization header."""
    r = Reader(data)
    scope, chunks = request_scope(r)
    body = b"".join(chunks)
    target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
    lines = [scope["method"].encode() + b" " + target + b" HTTP/1.1", b"host: 127.0.0.1"]
    names = set()
    for name, value in scope["headers"]:
        if name in (b"host", b"content-length", b"transfer-encoding", b"connection"):
            continue  # these are the framing: set below, so the request stays well-formed
        names.add(name)
        lines.append(name + b": " + value)
    lines += [b"content-length: %d" % len(body), b"connection: close"]
    auth = dict(scope["headers"]).get(b"authorization")
    if auth is not None:
        auth = auth.strip(b" \t")  # HTTP drops whitespace around a field value
    return b"\r\n".join(lines) + b"\r\n\r\n" + body, scope["path"], auth


def exchange(host: str, port: int, raw: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before it has read everything
        response = b""
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except ConnectionResetError:
            pass
        return response


def _check(response: bytes, path: str, auth: bytes | None, well_formed: bool) -> None:
    if not response:
        assert not well_formed, "no answer to a well-formed request"
        return
    match = _STATUS.match(response)
    assert match, f"not an HTTP response: {response[:80]!r}"
    status = int(match.group(1))
    assert status < 500 or (status == 503 and path.startswith("/health")), (status, response)
    if well_formed and status != 400:
        assert (status == 401) == (auth != b"Bearer " + TOKEN.encode()), (status, auth)


def fuzz_node(api_url: str, *, inputs: int, seed: int, seeds: list[bytes]) -> Report:
    """Send ``inputs`` requests to the node at ``api_url`` (which must use TOKEN)."""
    parts = urlsplit(api_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rng = random.Random(seed)
    report = Report("http_node")
    for i in range(inputs):
        data = seeds[i] if i < len(seeds) else mutate(rng, seeds)
        raw, path, auth = _render(data)
        well_formed = rng.random() < 0.6
        if not well_formed:
            raw = mutate(rng, [raw])
        report.inputs += 1
        try:
            _check(exchange(host, port, raw), path, auth, well_formed)
        except (AssertionError, OSError) as exc:
            report.findings.append(Finding("http_node", raw, f"{type(exc).__name__}: {exc}",
                                           traceback.format_exc()))
            if len(report.findings) >= 5:
                break
    return report
