"""The API server's changes to hypercorn's connection handling, over real sockets on 127.0.0.1:
a keep-alive connection serves one request after another (its idle timer moved, not
restarted), an idle one is closed after the keep-alive timeout, and a streamed response's head
is written before its body exists (only heads with a Content-Length wait for their body)."""

from __future__ import annotations

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bzzz_edge.api import ApiServer


def _app(release: trio.Event) -> Starlette:
    async def fixed(request: Request) -> Response:
        return PlainTextResponse("x" * 300)

    async def stream(request: Request) -> Response:
        async def body():  # type: ignore[no-untyped-def]
            await release.wait()
            yield b"late"

        return StreamingResponse(body(), media_type="text/plain")

    return Starlette(routes=[Route("/fixed", fixed), Route("/stream", stream)])


async def _read_until(sock: trio.socket.SocketType, marker: bytes, have: bytes = b"") -> bytes:
    while marker not in have:
        chunk = await sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}: {have!r}")
        have += chunk
    return have


async def _serve(nursery: trio.Nursery, release: trio.Event, keep_alive: float) -> tuple[
        ApiServer, trio.socket.SocketType]:
    server = ApiServer(_app(release), "127.0.0.1:0")
    server._config.keep_alive_timeout = keep_alive
    url = await nursery.start(server.run)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    await sock.connect((host, int(port)))
    return server, sock


def test_keep_alive_connection_serves_requests_in_turn_with_whole_responses() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server, sock = await _serve(nursery, trio.Event(), keep_alive=30.0)
            with trio.fail_after(20), sock:
                have = b""
                for _ in range(5):
                    await sock.send(b"GET /fixed HTTP/1.1\r\nhost: a\r\n\r\n")
                    have = await _read_until(sock, b"x" * 300, have)
                    head, _, rest = have.partition(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200 ")
                    assert b"content-length: 300" in head.lower()
                    have = rest[300:]
            await server.stop()

    trio.run(main)


def test_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server, sock = await _serve(nursery, trio.Event(), keep_alive=0.3)
            with trio.fail_after(20), sock:
                await sock.send(b"GET /fixed HTTP/1.1\r\nhost: a\r\n\r\n")
                have = await _read_until(sock, b"x" * 300)
                while chunk := await sock.recv(65536):  # then EOF: the server closed it
                    have += chunk
                assert have.count(b"HTTP/1.1 200") == 1
            await server.stop()

    trio.run(main)


def test_streamed_response_head_is_sent_before_its_body() -> None:
    async def main() -> None:
        release = trio.Event()
        async with trio.open_nursery() as nursery:
            server, sock = await _serve(nursery, release, keep_alive=30.0)
            with trio.fail_after(20), sock:
                await sock.send(b"GET /stream HTTP/1.1\r\nhost: a\r\n\r\n")
                have = await _read_until(sock, b"\r\n\r\n")  # while the body waits
                assert have.startswith(b"HTTP/1.1 200 ") and b"late" not in have
                release.set()
                await _read_until(sock, b"late", have)
            await server.stop()

    trio.run(main)
