"""Serve the ASGI app with hypercorn's trio worker. Does I/O (a listening socket)."""

from __future__ import annotations

import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from wsgiref.handlers import format_date_time

import h11
import hypercorn.protocol as hypercorn_protocol
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.events import Body, EndBody, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import STREAM_ID, H11Protocol
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio import serve
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import H11SendableEvent
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from ..config import parse_hostport
from ..errors import BzzzError

__all__ = ["MAX_FAST_POST_BODY", "ApiServer", "FastGet", "FastPost", "PostAnswer"]

#: ``fast_get(target, authorization)``: the answer to a plain GET of ``target`` (the request
#: target as sent) as ``(headers, body)`` with status 200, or None for the app to answer it.
FastGet = Callable[[bytes, bytes], "tuple[list[tuple[bytes, bytes]], bytes] | None"]
#: What answers one POST without ASGI: its body in, ``(status, headers, body)`` out.
PostAnswer = Callable[[bytes], Awaitable[tuple[int, list[tuple[bytes, bytes]], bytes]]]
#: ``fast_post(target, authorization)``: the ``PostAnswer`` for a POST of ``target``, or None
#: for the app to answer it.
FastPost = Callable[[bytes, bytes], "PostAnswer | None"]
#: Larger POST bodies always go to the app.
MAX_FAST_POST_BODY = 1 << 20

log = logging.getLogger(__name__)


class _ConnectionBarrier(TCPServer):
    """hypercorn's per-connection server, with a bug of hypercorn 0.18 kept inside it, one
    keep-alive timer task per connection (``_IdleTimer``) and one scheduler trip less per write
    (``protocol_send``).

    Bytes pipelined after a request answered with ``Connection: close`` make hypercorn send its
    400 while another of its tasks half-closes the socket; trio raises BusyResourceError, which
    escaped the connection and stopped the whole node, from one unauthenticated request (found
    by tests/fuzz/test_http_node.py). The connection is over either way: end it quietly.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = _IdleTimer(self)  # type: ignore[assignment]

    async def run(self) -> None:
        try:
            await super().run()
        except* trio.BusyResourceError:
            log.debug("HTTP connection ended by a send conflict in hypercorn")

    async def protocol_send(self, event: Event) -> None:
        """hypercorn's, less a trip through trio's scheduler for each write: ``trio.Lock``
        checkpoints on taking the send lock even when it is free, and the send itself
        checkpoints again. A free lock is taken without it here; a held one is waited for."""
        if not isinstance(event, RawData) or self.send_lock.locked():
            await super().protocol_send(event)
            return
        self.send_lock.acquire_nowait()
        try:
            try:
                with trio.CancelScope(shield=True):
                    await self.stream.send_all(event.data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self.protocol.handle(Closed())
        finally:
            self.send_lock.release()


class _IdleTimer:
    """A connection's keep-alive timer: one task for the connection's life, not one per request.

    hypercorn's own (``TrioSingleTask``) starts a task with ``nursery.start`` each time the
    connection goes idle and cancels it when a request arrives: several trips through trio's
    scheduler for every request. This keeps one task waiting in a cancel scope whose deadline
    is moved instead (idle: now + keep_alive_timeout; busy: never), with hypercorn's meaning:
    idle past the timeout, or idle when the server stops, closes the connection; a connection
    busy when the server stops is closed by hypercorn once its response is sent.
    """

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._scope: trio.CancelScope | None = None
        self._idle = False

    async def restart(self, task_group: Any, action: Any) -> None:
        """The connection is idle (hypercorn passes its ``_idle_timeout``: not needed here)."""
        self._idle = True
        deadline = trio.current_time() + self._server.config.keep_alive_timeout
        if self._scope is None:
            self._scope = trio.CancelScope(deadline=deadline)
            task_group.spawn(self._watch, self._scope)
        else:
            self._scope.deadline = deadline

    async def stop(self) -> None:
        """The connection is busy with a request."""
        self._idle = False
        if self._scope is not None:
            self._scope.deadline = math.inf

    async def _watch(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._server.context.terminated.wait()
        self._scope = None
        if self._idle:
            with trio.CancelScope(shield=True):
                await self._server._initiate_server_close()


hypercorn_run.TCPServer = _ConnectionBarrier  # type: ignore[attr-defined]


class _OneWriteResponses(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, writing a response of known length in one send, and
    answering the hot GET without the ASGI machinery.

    hypercorn writes the head as soon as the app starts its response and the body as a second
    write: two trips through its send lock, trio's scheduler and the kernel's TCP path for each
    request, about a fifth of what a small GET costs the node (benchmarks/bench_store.py). A
    head that carries Content-Length is held and written with the next event (the body, or the
    end of an empty or HEAD response), which such a response sends straight after it. A head
    without a length (a stream such as the event streams) is written at once, as before. The
    empty write that ends a response of known length is not sent at all.

    A plain GET (no body, no upgrade) is first offered to the server's ``fast_get`` (UCXI reads
    of one address: ``UcxiApp.fast_get`` behind the token check), which answers it right here
    when it can: no ASGI stream, app task, memory channels, scope or Starlette request (a
    quarter of what such a GET cost the node; with the rest here, 465 us of CPU became 285).
    Whatever it declines (any error, a query string, a wildcard, a wrong token) goes to the
    app as before, which answers it as it always did.

    A POST with a Content-Length (no chunks, no upgrade, no 100-continue) of at most
    ``MAX_FAST_POST_BODY`` is likewise offered to ``fast_post`` (proposals to the decision
    log and task commands, behind the token check): its answer takes the body once the
    request has ended and is awaited on the connection's own task, the same bytes the app
    would send (a proposal over HTTP cost the coordinator ~400 us of CPU more than one made in
    its process; with this, 1,274 us per HTTP commit became 1,058).
    """

    _held = b""

    async def _create_stream(self, request: h11.Request) -> None:
        if not self.config.server_names:
            stream = self._fast_stream(request)
            if stream is not None:
                self.stream = stream  # type: ignore[assignment]
                self.keep_alive_requests += 1
                await self.context.mark_request()
                return
        await super()._create_stream(request)

    def _fast_stream(self, request: h11.Request) -> _Answered | _Posted | None:
        if request.method == b"GET":
            fast_get: FastGet | None = getattr(self.config, "fast_get", None)
            authorization = None if fast_get is None else _plain_get_authorization(request)
            if fast_get is None or authorization is None:
                return None
            answer = fast_get(request.target, authorization)
            headers = None if answer is None else _checked(answer[0])
            return None if headers is None else _Answered(self, headers, answer[1])  # type: ignore[index]
        if request.method == b"POST":
            fast_post: FastPost | None = getattr(self.config, "fast_post", None)
            authorization = None if fast_post is None else _sized_post_authorization(request)
            if fast_post is None or authorization is None:
                return None
            answer_post = fast_post(request.target, authorization)
            return None if answer_post is None else _Posted(self, request.target, answer_post)
        return None

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if isinstance(event, h11.Response) and _has_length(event):
            self._held = data
            return
        if self._held:
            data, self._held = self._held + (data or b""), b""
        if data:
            await self.send(RawData(data=data))


def _plain_get_authorization(request: h11.Request) -> bytes | None:
    """The Authorization header of a GET that has no body and asks no upgrade (the last one,
    as the app's token check reads it; b"" if none), or None for any other request."""
    authorization = b""
    for name, value in request.headers:
        if name == b"authorization":
            authorization = value
        elif name in _NOT_PLAIN:
            return None
    return authorization


_NOT_PLAIN = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect"))


def _sized_post_authorization(request: h11.Request) -> bytes | None:
    """The Authorization header (b"" if none) of a POST whose body has a Content-Length of at
    most ``MAX_FAST_POST_BODY`` and that asks no upgrade or 100-continue; None for any other."""
    authorization, length = b"", -1
    for name, value in request.headers:
        if name == b"authorization":
            authorization = value
        elif name == b"content-length":
            length = int(value)  # h11 has checked it is one decimal number
        elif name in _NOT_PLAIN:
            return None
    return authorization if 0 <= length <= MAX_FAST_POST_BODY else None


def _checked(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]] | None:
    """The app's headers as hypercorn passes them on (values stripped: ``hypercorn.utils.
    build_and_validate_headers``), if h11 would take every value; None if not (the app then
    answers, and meets h11's refusal as before).

    h11 checks every name and value of a response with two regular expressions, a tenth of
    what a fast GET costs the node; these names are the app's constants (and hypercorn's, added
    later), so only the values need checking, and one search over them all does it: h11's rule
    for a value stripped of surrounding white space is no NUL, CR, LF, VT or FF in it.
    """
    checked = [(name, value.strip()) for name, value in headers]
    return None if _BAD_VALUE.search(b" ".join(value for _, value in checked)) else checked


_BAD_VALUE = re.compile(rb"[\x00\n\r\x0b\x0c]")


class _Answered:
    """The stream of a request ``fast_get`` answered: once the request has ended, the response
    goes out as hypercorn's ``stream_send`` would send the app's (its date and server headers,
    its keep-alive limit), h11 trusting the checked headers, in one write; then the connection
    is recycled as after any response."""

    idle = False

    def __init__(self, protocol: _OneWriteResponses, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> None:
        self._protocol, self._headers, self._body = protocol, headers, body

    async def handle(self, event: StreamEvent) -> None:
        if not isinstance(event, EndBody):
            return  # StreamClosed: nothing held; a GET without framing headers has no Body
        await _answer(self._protocol, 200, self._headers, self._body)


class _Posted:
    """The stream of a POST ``fast_post`` takes: the body is gathered (h11 holds it to its
    Content-Length), then answered as ``_Answered`` answers a GET. A client gone before the end
    of its body gets nothing; one gone while the answer is awaited is met by the write."""

    idle = False

    def __init__(self, protocol: _OneWriteResponses, target: bytes, answer: PostAnswer) -> None:
        self._protocol, self._target, self._answer = protocol, target, answer
        self._chunks: list[bytes] = []

    async def handle(self, event: StreamEvent) -> None:
        if isinstance(event, Body):
            self._chunks.append(bytes(event.data))
        elif isinstance(event, EndBody):
            body, self._chunks = b"".join(self._chunks), []
            try:
                status, headers, body = await self._answer(body)
                checked = _checked(headers)
                if checked is None:  # the answers are the app's constants and JSON: never so
                    raise BzzzError("a fast POST answer carries a header value h11 refuses")
            except Exception:
                # What Starlette's error middleware does for the app: a bug answers 500 and is
                # logged; the connection, the server and the node go on.
                log.exception("HTTP API: error answering POST %s",
                              self._target.decode("latin-1"))
                status, checked, body = _INTERNAL_ERROR
            await _answer(self._protocol, status, checked, body)


#: Starlette's answer to an error in the app (``PlainTextResponse``, debug off).
_INTERNAL_ERROR = (500, [(b"content-length", b"21"),
                         (b"content-type", b"text/plain; charset=utf-8")],
                   b"Internal Server Error")


async def _answer(protocol: _OneWriteResponses, status: int,
                  headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Send a response as hypercorn's ``stream_send`` would send the app's (its date and server
    headers, its keep-alive limit), h11 trusting the checked headers, in one write; then
    recycle the connection as after any response."""
    config = protocol.config
    headers = headers + config.response_headers("h11")
    if protocol.keep_alive_requests >= config.keep_alive_max_requests:
        headers.append((b"connection", b"close"))
    send = protocol.connection.send  # bytes for each of these events (None: a close)
    data = send(h11.Response(status_code=status, headers=headers, http_version=b"1.1",
                             reason=b"", _parsed=True)) or b""
    if body:
        data += send(h11.Data(data=body)) or b""
    data += send(h11.EndOfMessage()) or b""
    await protocol.send(RawData(data=data))
    await protocol.stream_send(StreamClosed(stream_id=STREAM_ID))


def _has_length(response: h11.Response) -> bool:
    return any(name.lower() == b"content-length" for name, _ in response.headers.raw_items())


class _Config(HypercornConfig):
    """hypercorn's configuration, with the Date header formatted once a second (hypercorn
    formats it for every response), and the app's ``fast_get`` and ``fast_post``."""

    fast_get: FastGet | None = None
    fast_post: FastPost | None = None
    _date = (0, b"")

    def __init__(self) -> None:
        super().__init__()
        self.include_date_header = False  # added by response_headers below instead

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        now = time.time()
        if int(now) != self._date[0]:
            self._date = (int(now), format_date_time(now).encode("ascii"))
        return [(b"date", self._date[1]), *super().response_headers(protocol)]


hypercorn_protocol.H11Protocol = _OneWriteResponses  # type: ignore[attr-defined]


class ApiServer:
    """The HTTP API as a node service: ``run`` starts listening, ``stop`` drains and returns."""

    def __init__(self, app: Starlette, listen: str, *, graceful_timeout: float = 2.0) -> None:
        self._app = app
        self._config = _Config()
        # The app's answer to plain GETs without the ASGI machinery (_OneWriteResponses).
        self._config.fast_get = getattr(app.state, "fast_get", None)
        self._config.fast_post = getattr(app.state, "fast_post", None)
        self._listen = listen
        self._config.graceful_timeout = graceful_timeout
        self._config.accesslog = None
        self._config.errorlog = logging.getLogger("bzzz_edge.api.hypercorn")
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self.url = ""

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the bound URL through ``task_status``, serve until ``stop``.

        Raises:
            BzzzError: the address cannot be bound (in use, not ours, no permission).
        """
        # Bind here rather than in hypercorn so a busy port is a clear error, not a traceback.
        # hypercorn takes ownership of the descriptor (it closes it when it stops).
        self._config.bind = [f"fd://{_bind(self._listen).detach()}"]
        try:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(self._serve)
                self.url = binds[0]
                log.info("HTTP API listening on %s", self.url)
                task_status.started(self.url)
        finally:
            self._stopped.set()

    async def _serve(self, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(self._app_quiet_on_send_conflict, self._config,  # type: ignore[arg-type]
                    shutdown_trigger=self._stop.wait, task_status=task_status)

    async def _app_quiet_on_send_conflict(self, scope: Scope, receive: Receive,
                                          send: Send) -> None:
        # The same hypercorn race as in _ConnectionBarrier, met by the app's own send: without
        # this, any client could have a traceback logged at ERROR with one request.
        try:
            await self._app(scope, receive, send)
        except* trio.BusyResourceError:
            log.debug("HTTP response cut short by a send conflict in hypercorn")

    async def stop(self) -> None:
        monitors = getattr(self._app.state, "monitors", None)
        if monitors is not None:
            monitors.close_all()  # open log streams would hold the graceful stop to its timeout
        topic_streams = getattr(self._app.state, "topic_streams", None)
        if topic_streams is not None:
            topic_streams.close_all()  # and so would open pub/sub event streams
        self._stop.set()
        await self._stopped.wait()


def _bind(listen: str) -> socket.socket:
    host, port = parse_hostport(listen)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise BzzzError(f"HTTP API cannot listen on {listen}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise BzzzError(f"HTTP API cannot listen on {listen}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock
