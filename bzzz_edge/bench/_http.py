"""A small HTTP/1.1 client for the benchmark: kept-alive connections to a node's API and its
Server-Sent Events stream, on trio (h11 parses; no thread per request, no connection per
request, so the client disturbs the 2 cores it shares with the nodes as little as it can).
Uses trio.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

from ..errors import BzzzError

__all__ = ["ApiConnection", "event_stream"]

_READ = 65536
_IDLE_REUSE = 2.0  # seconds a kept-alive connection may sit unused and still be reused


def _host_port(base: str) -> tuple[str, int]:
    url = urlsplit(base)
    if url.scheme != "http" or not url.hostname:
        raise BzzzError(f"{base}: the benchmark speaks plain http://HOST:PORT only")
    return url.hostname, url.port or 80


class ApiConnection:
    """One kept-alive connection to a node's API; one request at a time.

    Args:
        base: the API's URL (``http://127.0.0.1:PORT``); token: sent as a bearer token if set.
    """

    def __init__(self, base: str, token: str = "") -> None:
        self.base = base
        self.host, self.port = _host_port(base)
        self.token = token
        self._stream: trio.SocketStream | None = None
        self._conn: h11.Connection | None = None
        self._lock = trio.Lock()
        self._used = 0.0
        self._answered = False  # whether the request in flight got any answer yet

    def _headers(self, body: bytes | None) -> list[tuple[str, str]]:
        headers = [("Host", f"{self.host}:{self.port}")]
        if body is not None:
            headers += [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body)))]
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        return headers

    async def _connect(self) -> None:
        try:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise BzzzError(f"cannot reach the node's API at {self.base}: "
                            f"{exc.strerror or exc}") from None
        self._conn = h11.Connection(h11.CLIENT)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON answer). A refused or dropped connection is a ``BzzzError``
        (the next call connects again)."""
        async with self._lock:
            # A kept-alive connection the server may have closed meanwhile (hypercorn closes
            # idle ones after a few seconds) is not reused; one that fails before any answer
            # came is retried once on a fresh connection.
            if self._conn is not None and trio.current_time() - self._used > _IDLE_REUSE:
                await self.aclose()
            for attempt in (1, 2):
                reused = self._conn is not None
                try:
                    answer = await self._call(method, path, body)
                except (BzzzError, OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                        h11.ProtocolError) as exc:
                    await self.aclose()
                    if reused and attempt == 1 and not self._answered:
                        continue
                    if isinstance(exc, BzzzError):
                        raise
                    raise BzzzError(f"{self.base}{path}: the connection failed: {exc!r}"
                                    ) from None
                self._used = trio.current_time()
                return answer
            raise AssertionError("unreachable")

    async def _call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self._conn is None or self._conn.our_state is not h11.IDLE:
            await self.aclose()
            await self._connect()
        assert self._stream is not None and self._conn is not None
        data = None if body is None else json.dumps(body).encode()
        out = self._conn.send(h11.Request(method=method, target=path,
                                          headers=self._headers(data))) or b""
        if data:
            out += self._conn.send(h11.Data(data=data)) or b""
        out += self._conn.send(h11.EndOfMessage()) or b""
        self._answered = False
        await self._stream.send_all(out)
        status, chunks = 0, []
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                raw = await self._stream.receive_some(_READ)
                self._conn.receive_data(raw)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                self._answered = True
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise BzzzError(f"{self.base}{path}: the node closed the connection")
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
        else:
            await self.aclose()
        raw_body = b"".join(chunks)
        try:
            return status, json.loads(raw_body or b"null")
        except ValueError:
            raise BzzzError(f"{self.base}{path}: HTTP {status}, not JSON; is it a bzzz-edge "
                            "API?") from None

    async def aclose(self) -> None:
        stream, self._stream, self._conn = self._stream, None, None
        if stream is not None:
            await stream.aclose()


async def event_stream(base: str, topic: str, token: str = "", *,
                       wanted: tuple[bytes, ...] = ()) -> AsyncIterator[dict[str, Any]]:
    """The deliveries of ``topic`` on the node at ``base``, as its SSE stream carries them
    (``sub --json``'s objects); yields ``{}`` once the stream is open (subscribed). With
    ``wanted``, only the deliveries whose line holds one of those bytes are parsed and
    yielded: the benchmark shares the cores with the nodes it measures, and parsing every
    node's copy of each announce (the largest event, sent while the claims are under way)
    would add its own work to the round.

    h11 reads the head only; the body is read by ``_SseBody``: h11 took a fifth of the
    benchmark's CPU for the events of ten streams (its chunk reader and state machine per
    event), and every node's ``task_claimed`` arrives at once, so each event's cost delays the
    next one's time stamp.

    Raises:
        BzzzError: the node cannot be reached, refuses the stream, or closes it.
    """
    host, port = _host_port(base)
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise BzzzError(f"cannot reach the node's API at {base}: {exc.strerror or exc}") from None
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", f"{host}:{port}"), ("Accept", "text/event-stream")]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    closed = f"{base}: the node closed the event stream"
    async with stream:
        await stream.send_all(conn.send(h11.Request(
            method="GET", target=f"/api/v1/topics/{topic}/events", headers=headers)) +
            (conn.send(h11.EndOfMessage()) or b""))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                raw = await stream.receive_some(_READ)
                if not raw:
                    raise BzzzError(closed)
                conn.receive_data(raw)
                continue
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise BzzzError(closed)
        if event.status_code != 200:
            raise BzzzError(f"{base}: the event stream answered HTTP {event.status_code}")
        chunked = any(name == b"transfer-encoding" and b"chunked" in value.lower()
                      for name, value in event.headers)
        body = _SseBody(chunked, closed)
        raw = conn.trailing_data[0]  # what came with the head
        while True:
            for block in body.feed(raw):
                for line in block.split(b"\n"):
                    if line.startswith(b": subscribed"):
                        yield {}
                    elif line.startswith(b"data: "):
                        if wanted and not any(w in line for w in wanted):
                            continue
                        try:
                            yield json.loads(line[6:])
                        except ValueError:
                            continue
            raw = await stream.receive_some(_READ)
            if not raw:
                raise BzzzError(closed)


class _SseBody:
    """An event stream's body, fed as it arrives: its chunk framing taken off (when
    ``chunked``), the events (blocks ended by a blank line) handed out whole.

    Raises (``feed``):
        BzzzError: the stream ended (the last chunk), bad framing, or an event past
            ``_MAX_EVENT`` bytes.
    """

    def __init__(self, chunked: bool, closed: str) -> None:
        self._chunked, self._closed = chunked, closed
        self._framed = b""  # received, still framed
        self._text = b""  # unframed, not a whole event yet

    def feed(self, raw: bytes) -> list[bytes]:
        if not self._chunked:
            self._text += raw
        else:
            framed = self._framed + raw
            at, parts = 0, [self._text]
            while True:
                line_end = framed.find(b"\r\n", at)
                if line_end < 0:
                    break
                try:
                    size = int(framed[at:line_end].split(b";", 1)[0], 16)
                except ValueError:
                    raise BzzzError(f"{self._closed}: bad chunk framing") from None
                if size == 0:
                    raise BzzzError(self._closed)
                end = line_end + 2 + size
                if len(framed) < end + 2:
                    break
                parts.append(framed[line_end + 2:end])
                at = end + 2
            self._framed, self._text = framed[at:], b"".join(parts)
        if b"\n\n" not in self._text:
            if len(self._text) + len(self._framed) > _MAX_EVENT:
                raise BzzzError(f"{self._closed}: an event over {_MAX_EVENT} bytes")
            return []
        *blocks, self._text = self._text.split(b"\n\n")
        return blocks


_MAX_EVENT = 64 * 2**20
