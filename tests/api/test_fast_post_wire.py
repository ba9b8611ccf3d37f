"""The server's fast POST path (``api/_server.py``) over real sockets on 127.0.0.1, with an
answer the test controls: a body sent in pieces is answered once whole; a client gone before
the end of its body is never answered; a client gone while its answer is awaited costs nothing
past the answer; requests pipelined behind a slow answer are answered in order; a server
stopping while an answer is awaited stops (the answer is cancelled at the graceful timeout, as
an app task is)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from bzzz_edge.api import ApiServer, create_app

PATH = b"/api/v1/coordination/propose"


class _Answers:
    """The fast path's answer: echoes the body once ``release`` is set; records calls."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.started = trio.Event()
        self.release = trio.Event()
        self.finished: list[bytes] = []
        self.cancelled = 0

    def fast_post(self, target: bytes, authorization: bytes) -> Any:
        return self.answer if target == PATH else None

    async def answer(self, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        self.bodies.append(body)
        self.started.set()
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        self.finished.append(body)
        return 200, [(b"content-length", b"%d" % len(body)), (b"content-type", b"x/y")], body


async def _start(nursery: trio.Nursery, answers: _Answers, *, graceful: float = 2.0,
                 ) -> tuple[ApiServer, tuple[str, int]]:
    app = create_app(SimpleNamespace(consensus=None))  # type: ignore[arg-type]
    app.state.fast_post = answers.fast_post
    server = ApiServer(app, "127.0.0.1:0", graceful_timeout=graceful)
    url = await nursery.start(server.run)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return server, (host, int(port))


async def _connect(address: tuple[str, int]) -> trio.SocketStream:
    return await trio.open_tcp_stream(*address)


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + PATH + b" HTTP/1.1\r\nhost: a\r\ncontent-length: %d\r\n" % len(body)
            + extra + b"\r\n" + body)


async def _responses(stream: trio.SocketStream, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` responses as (status line, body)."""
    have, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in have:
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed: {have!r}"
            have += chunk
        head, _, have = have.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = int(next(v for k, v in (x.split(b": ", 1) for x in lines[1:])
                          if k.lower() == b"content-length"))
        while len(have) < length:
            have += await stream.receive_some(65536)
        out.append((lines[0], have[:length]))
        have = have[length:]
    return out


def _run(test: Any) -> None:
    async def main() -> None:
        with trio.fail_after(30):  # a hang detector, not a timing assertion
            async with trio.open_nursery() as nursery:
                await test(nursery)
                nursery.cancel_scope.cancel()
    trio.run(main)


def test_a_body_in_pieces_is_answered_once_whole() -> None:
    async def test(nursery: trio.Nursery) -> None:
        answers = _Answers()
        answers.release.set()
        _, address = await _start(nursery, answers)
        stream = await _connect(address)
        request = _post(b"0123456789" * 100)
        for i in range(0, len(request), 97):
            await stream.send_all(request[i:i + 97])
            await trio.testing.wait_all_tasks_blocked()
            if i + 97 < len(request):
                assert not answers.bodies
        assert await _responses(stream, 1) == [(b"HTTP/1.1 200 ", b"0123456789" * 100)]

    _run(test)


def test_a_client_gone_before_the_end_of_its_body_is_not_answered() -> None:
    async def test(nursery: trio.Nursery) -> None:
        answers = _Answers()
        answers.release.set()
        _, address = await _start(nursery, answers)
        stream = await _connect(address)
        await stream.send_all(_post(b"x" * 100)[:-50])
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert answers.bodies == []
        other = await _connect(address)
        await other.send_all(_post(b"y"))
        assert await _responses(other, 1) == [(b"HTTP/1.1 200 ", b"y")]

    _run(test)


def test_a_client_gone_while_its_answer_is_awaited_leaves_the_server_serving(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    async def test(nursery: trio.Nursery) -> None:
        answers = _Answers()
        _, address = await _start(nursery, answers)
        stream = await _connect(address)
        # Two pipelined: the second is read only after the first's answer (HTTP/1.1 order).
        await stream.send_all(_post(b"first") + _post(b"second"))
        await answers.started.wait()
        await stream.aclose()
        answers.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert answers.finished[0] == b"first"
        other = await _connect(address)
        await other.send_all(_post(b"third"))
        assert await _responses(other, 1) == [(b"HTTP/1.1 200 ", b"third")]

    _run(test)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_requests_pipelined_behind_a_slow_answer_are_answered_in_order() -> None:
    async def test(nursery: trio.Nursery) -> None:
        answers = _Answers()
        _, address = await _start(nursery, answers)
        stream = await _connect(address)
        await stream.send_all(_post(b"a") + _post(b"bb") + _post(b"ccc", b"connection: close\r\n"))
        await answers.started.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert answers.bodies == [b"a"]  # one at a time
        answers.release.set()
        got = await _responses(stream, 3)
        assert [body for _, body in got] == [b"a", b"bb", b"ccc"]
        assert await stream.receive_some(10) == b""  # closed after the one asking for it

    _run(test)


def test_a_server_stopping_while_an_answer_is_awaited_stops() -> None:
    async def test(nursery: trio.Nursery) -> None:
        answers = _Answers()  # never released
        server, address = await _start(nursery, answers, graceful=0.5)
        stream = await _connect(address)
        await stream.send_all(_post(b"never"))
        await answers.started.wait()
        await server.stop()
        assert answers.cancelled == 1
        assert await stream.receive_some(10) == b""

    _run(test)
