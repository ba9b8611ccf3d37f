"""Serve the ASGI app with hypercorn's trio worker. Does I/O (a listening socket)."""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

import h11
import hypercorn.protocol as hypercorn_protocol
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio import serve
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import H11SendableEvent
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from ..config import parse_hostport
from ..errors import BzzzError

__all__ = ["ApiServer"]

log = logging.getLogger(__name__)


class _ConnectionBarrier(TCPServer):
    """hypercorn's per-connection server, with a bug of hypercorn 0.18 kept inside it.

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
    """hypercorn's HTTP/1.1 protocol, writing a response of known length in one send.

    hypercorn writes the head as soon as the app starts its response and the body as a second
    write: two trips through its send lock, trio's scheduler and the kernel's TCP path for each
    request, about a fifth of what a small GET costs the node (benchmarks/bench_store.py). A
    head that carries Content-Length is held and written with the next event (the body, or the
    end of an empty or HEAD response), which such a response sends straight after it. A head
    without a length (a stream such as the event streams) is written at once, as before.
    """

    _held = b""

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
        await self.send(RawData(data=data or b""))


def _has_length(response: h11.Response) -> bool:
    return any(name == b"content-length" for name, _ in response.headers)


hypercorn_protocol.H11Protocol = _OneWriteResponses  # type: ignore[attr-defined]


class ApiServer:
    """The HTTP API as a node service: ``run`` starts listening, ``stop`` drains and returns."""

    def __init__(self, app: Starlette, listen: str, *, graceful_timeout: float = 2.0) -> None:
        self._app = app
        self._config = HypercornConfig()
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
