"""A small HTTP/1.1 client for the benchmark: kept-alive connections to a node's API and its
Server-Sent Events stream, on trio (no thread per request, no connection per request, and
answers and events read by hand rather than with h11, so the client disturbs the 2 cores it
shares with the nodes as little as it can). Uses trio.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

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
    """One kept-alive connection to a node's API; one request at a time. Requests are written
    and answers read by hand (``_Answer``), not with h11: the claims of a contested round are
    ten requests the benchmark makes at one instant on the cores the nodes share, and h11's
    state machine and checks were most of what each cost it.

    Args:
        base: the API's URL (``http://127.0.0.1:PORT``); token: sent as a bearer token if set.
    """

    def __init__(self, base: str, token: str = "") -> None:
        self.base = base
        self.host, self.port = _host_port(base)
        self.token = token
        self._stream: trio.SocketStream | None = None
        self._lock = trio.Lock()
        self._used = 0.0
        self._answered = False  # whether the request in flight got any answer yet

    def _request(self, method: str, path: str, body: bytes | None) -> bytes:
        if not _TARGET.fullmatch(path) or method not in ("GET", "POST"):
            raise BzzzError(f"the benchmark cannot send {method} {path!r}")
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        if self.token:
            head += f"Authorization: Bearer {self.token}\r\n"
        return (head + "\r\n").encode("latin-1") + (body or b"")

    async def _connect(self) -> trio.SocketStream:
        try:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise BzzzError(f"cannot reach the node's API at {self.base}: "
                            f"{exc.strerror or exc}") from None
        return self._stream

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON answer). A refused or dropped connection is a ``BzzzError``
        (the next call connects again)."""
        async with self._lock:
            # A kept-alive connection the server may have closed meanwhile (hypercorn closes
            # idle ones after a few seconds) is not reused; one that fails before any answer
            # came is retried once on a fresh connection.
            if self._stream is not None and trio.current_time() - self._used > _IDLE_REUSE:
                await self.aclose()
            for attempt in (1, 2):
                reused = self._stream is not None
                try:
                    answer = await self._call(method, path, body)
                except (BzzzError, OSError, trio.BrokenResourceError,
                        trio.ClosedResourceError) as exc:
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
        stream = self._stream or await self._connect()
        data = None if body is None else json.dumps(body).encode()
        request = self._request(method, path, data)
        self._answered = False
        await stream.send_all(request)
        answer = _Answer(f"{self.base}{path}")
        while not answer.feed(await stream.receive_some(_READ)):
            self._answered = answer.status > 0
        self._answered = True
        if answer.close:
            await self.aclose()
        try:
            return answer.status, json.loads(answer.body or b"null")
        except ValueError:
            raise BzzzError(f"{self.base}{path}: HTTP {answer.status}, not JSON; is it a "
                            "bzzz-edge API?") from None

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()


#: What the benchmark asks for: an absolute path (and query) with nothing to escape.
_TARGET = re.compile(r"/[A-Za-z0-9/_.~%?=&:+-]*")


class _Answer:
    """One HTTP/1.1 answer, fed as it arrives: its status, then its body (by its length, its
    chunks, or to the end of the connection); ``close``: the connection cannot be reused.
    Interim (1xx) answers are skipped.

    Raises (``feed``):
        BzzzError: the connection ended first, a malformed answer, or one past
            ``_MAX_ANSWER`` bytes.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._have = b""
        self.status = 0
        self.close = False
        self.body = b""
        self._length: int | None = None  # the body's, once the head is read
        self._chunks: _Dechunker | None = None

    def feed(self, raw: bytes) -> bool:
        """Take ``raw`` (b"": the connection ended); True once the answer is complete."""
        if not raw and not (self.status and self._length is None and self._chunks is None):
            raise BzzzError(f"{self._what}: the node closed the connection")
        self._have += raw
        if len(self._have) > _MAX_ANSWER:
            raise BzzzError(f"{self._what}: an answer over {_MAX_ANSWER} bytes")
        while not self.status:
            head_end = self._have.find(b"\r\n\r\n")
            if head_end < 0:
                return False
            self._head(self._have[:head_end])
            self._have = self._have[head_end + 4:]
        if self._chunks is not None:
            self.body += self._chunks.feed(self._have)
            self._have = b""
            return self._chunks.ended
        if self._length is None:  # to the end of the connection
            if raw:
                return False
            self.body, self.close = self._have, True
            return True
        if len(self._have) < self._length:
            return False
        self.body = self._have[:self._length]
        return True

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise BzzzError(f"{self._what}: not an HTTP answer: {lines[0][:80]!r}")
        status = int(parts[1])
        if status < 200:
            return  # interim: the real answer follows
        self.close = parts[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if not value.isdigit():
                    raise BzzzError(f"{self._what}: a bad Content-Length")
                self._length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                self._chunks = _Dechunker(self._what)
            elif name == b"connection":
                self.close = self.close or b"close" in value
        if status in (204, 304):
            self._length, self._chunks = 0, None
        if self._chunks is not None:
            self._length = None
            self.close = True  # (its trailer is not read: the connection is not reused)
        elif self._length is None:
            self.close = True
        self.status = status


_MAX_ANSWER = 64 * 2**20


async def event_stream(base: str, topic: str, token: str = "", *,
                       wanted: tuple[bytes, ...] = ()) -> AsyncIterator[dict[str, Any]]:
    """The deliveries of ``topic`` on the node at ``base``, as its SSE stream carries them
    (``sub --json``'s objects); yields ``{}`` once the stream is open (subscribed). With
    ``wanted``, only the deliveries whose line holds one of those bytes are parsed and
    yielded: the benchmark shares the cores with the nodes it measures, and parsing every
    node's copy of each announce (the largest event, sent while the claims are under way)
    would add its own work to the round. The node is asked for those only, too (the
    stream's ``match`` filters: the data holds one of them), so none of the ten nodes formats
    and writes, nor the benchmark reads, an announce event while the claims are under way;
    the check here stays for a node that sends more.

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
            method="GET", target=_events_target(topic, wanted), headers=headers)) +
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


def _events_target(topic: str, wanted: tuple[bytes, ...]) -> str:
    query = "&".join(f"match={quote(w.decode('utf-8'), safe='')}" for w in wanted)
    return f"/api/v1/topics/{topic}/events" + (f"?{query}" if query else "")


class _Dechunker:
    """A body's chunk framing taken off as the bytes arrive; ``ended`` once the last chunk
    came (what follows it, the trailer, is not read).

    Raises (``feed``):
        BzzzError: bad framing.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._framed = b""  # received, not unframed yet (a chunk not whole yet)
        self.ended = False

    def feed(self, raw: bytes) -> bytes:
        """The content of the chunks ``raw`` completes."""
        framed = self._framed + raw
        at, parts = 0, []
        while not self.ended:
            line_end = framed.find(b"\r\n", at)
            if line_end < 0:
                break
            try:
                size = int(framed[at:line_end].split(b";", 1)[0], 16)
            except ValueError:
                raise BzzzError(f"{self._what}: bad chunk framing") from None
            if size == 0:
                self.ended = True
                break
            end = line_end + 2 + size
            if len(framed) < end + 2:
                break
            parts.append(framed[line_end + 2:end])
            at = end + 2
        self._framed = framed[at:]
        return b"".join(parts)

    @property
    def pending(self) -> int:
        return len(self._framed)


class _SseBody:
    """An event stream's body, fed as it arrives: its chunk framing taken off (when
    ``chunked``), the events (blocks ended by a blank line) handed out whole.

    Raises (``feed``):
        BzzzError: the stream ended (the last chunk: ``closed``), bad framing, or an event
            past ``_MAX_EVENT`` bytes.
    """

    def __init__(self, chunked: bool, closed: str) -> None:
        self._closed = closed
        self._chunks = _Dechunker(closed) if chunked else None
        self._text = b""  # unframed, not a whole event yet

    def feed(self, raw: bytes) -> list[bytes]:
        if self._chunks is None:
            self._text += raw
        else:
            self._text += self._chunks.feed(raw)
            if self._chunks.ended:
                raise BzzzError(self._closed)
        if b"\n\n" not in self._text:
            pending = len(self._text) + (self._chunks.pending if self._chunks else 0)
            if pending > _MAX_EVENT:
                raise BzzzError(f"{self._closed}: an event over {_MAX_EVENT} bytes")
            return []
        *blocks, self._text = self._text.split(b"\n\n")
        return blocks


_MAX_EVENT = 64 * 2**20
