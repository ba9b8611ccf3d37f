"""The server's fast path for plain UCXI GETs (``_server._OneWriteResponses``,
``UcxiApp.fast_get``) against the app's own answers, over real sockets on 127.0.0.1 and a real
LMDB store: the same status, headers and body as the app gives; requests in turn on one
keep-alive connection; the token checked; everything it declines answered by the app."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio

from bzzz_edge.api import ApiServer, create_app
from bzzz_edge.store import Store
from bzzz_edge.store.content import DATABASES, ContentStore

DOC = "ucxl://gpt4:architect@chorus:design/*^/src/main.go"


def _path(address: str) -> bytes:
    return ("/ucxi/v1/" + urllib.parse.quote(address, safe="")).encode()


class _Conn:
    """One keep-alive connection; ``request`` returns (status, headers, body)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock, self.have = sock, b""

    async def request(self, target: bytes, headers: bytes = b"", body: bytes = b"",
                      method: bytes = b"GET") -> tuple[int, dict[bytes, bytes], bytes]:
        await self.sock.send(method + b" " + target + b" HTTP/1.1\r\nhost: a\r\n" + headers
                             + b"\r\n" + body)
        while b"\r\n\r\n" not in self.have:
            self.have += await self._recv()
        head, _, self.have = self.have.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(fields[b"content-length"])
        while len(self.have) < length:
            self.have += await self._recv()
        content, self.have = self.have[:length], self.have[length:]
        return int(lines[0].split()[1]), fields, content

    async def _recv(self) -> bytes:
        chunk = await self.sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {self.have!r}")
        return chunk


async def _serve(tmp: Path, nursery: trio.Nursery, token: str = "") -> tuple[
        ApiServer, _Conn, ContentStore, list[bytes]]:
    store = Store(tmp / "store", map_size=2**22, databases=DATABASES)
    content = ContentStore(store, author="node-a", max_content_bytes=2**20,
                           compress_min_bytes=128)
    await content.put(DOC, b"package main\n", media_type="text/x-go")
    await content.put(DOC, b"package main // v2\n" * 20, media_type="text/x-go")
    node = SimpleNamespace(content=content,
                           settings=SimpleNamespace(storage=SimpleNamespace(
                               max_content_bytes=2**20)))
    app = create_app(node, token=token)  # type: ignore[arg-type]
    by_app: list[bytes] = []  # UCXI reads the app itself answered, by raw path
    reads = app.ucxi_reads
    assert reads is not None

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        by_app.append(scope["raw_path"])
        await reads(scope, receive, send)

    app.ucxi_reads = counted
    server = ApiServer(app, "127.0.0.1:0")
    url = await nursery.start(server.run)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    await sock.connect((host, int(port)))
    return server, _Conn(sock), content, by_app


def test_fast_get_answers_as_the_app_does_on_one_connection(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server, conn, content, by_app = await _serve(tmp_path, nursery)
            with trio.fail_after(20), conn.sock:
                by_query = b"/ucxi/v1/?address=" + urllib.parse.quote(DOC).encode()
                for _ in range(3):  # fast, app, fast, app, ... on one connection
                    fast = await conn.request(_path(DOC))
                    slow = await conn.request(by_query)
                    assert fast[0] == slow[0] == 200
                    assert fast[2] == slow[2] == b"package main // v2\n" * 20
                    fast[1].pop(b"date"), slow[1].pop(b"date")
                    assert fast[1] == slow[1]
                    assert fast[1][b"x-ucxl-version"] == b"2"
                    assert fast[1][b"content-type"] == b"text/x-go"
                # An earlier version, through the fast path too.
                status, headers, body = await conn.request(_path(DOC.replace("*^", "*1")))
                assert (status, body) == (200, b"package main\n")
                assert headers[b"x-ucxl-version"] == b"1"
            assert by_app == [by_query.split(b"?")[0]] * 3
            await server.stop()
            content._store.close()

    trio.run(main)


def test_what_the_fast_path_declines_the_app_answers(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server, conn, content, by_app = await _serve(tmp_path, nursery)
            with trio.fail_after(20), conn.sock:
                missing = _path(DOC.replace("main.go", "other.go"))
                status, _, body = await conn.request(missing)
                assert status == 404 and b'"not_found"' in body
                status, _, body = await conn.request(_path(DOC.replace("*^", "*7")))
                assert status == 404 and b'"no_such_version"' in body
                wildcard = _path("ucxl://*:architect@chorus:design/*^/src/main.go")
                status, _, body = await conn.request(wildcard)
                assert status == 200 and b'"items"' in body
                status, _, _ = await conn.request(_path(DOC) + b"?meta=1")
                assert status == 200
                status, _, body = await conn.request(b"/ucxi/v1/ucxl%3A%2F%2Fbad")
                assert status == 400 and b'"bad_address"' in body
                # A GET with a body is the app's (hypercorn hands the app the body).
                status, _, _ = await conn.request(_path(DOC), b"content-length: 2\r\n", b"xy")
                assert status == 200
                status, _, _ = await conn.request(_path(DOC))  # and then the fast path again
                assert status == 200
            assert len(by_app) == 6
            await server.stop()
            content._store.close()

    trio.run(main)


def test_fast_get_checks_the_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server, conn, content, by_app = await _serve(tmp_path, nursery, token="s3cret")
            with trio.fail_after(20), conn.sock:
                status, headers, body = await conn.request(_path(DOC))
                assert status == 401 and b'"error"' in body
                assert headers[b"www-authenticate"] == b"Bearer"
                status, _, _ = await conn.request(_path(DOC), b"authorization: Bearer nope\r\n")
                assert status == 401
                # The last Authorization header counts, as in the app's check.
                status, _, _ = await conn.request(
                    _path(DOC), b"authorization: Bearer s3cret\r\nauthorization: x\r\n")
                assert status == 401
                status, _, body = await conn.request(_path(DOC),
                                                     b"authorization: Bearer s3cret\r\n")
                assert status == 200 and body == b"package main // v2\n" * 20
            assert len(by_app) == 3  # the refusals came from the app; the last GET did not
            await server.stop()
            content._store.close()

    trio.run(main)


def test_a_task_is_shown_by_the_fast_path_with_the_apps_bytes() -> None:
    from bzzz_edge.api._tasks import show_answer
    from bzzz_edge.tasks._model import HistoryItem, State, Task

    owner = bytes(range(32))
    task = Task(id="5e1f", address="ucxl://bzzz:tasks@bzzz:5e1f/*^/", title="caf\u00e9 \"q\"",
                capabilities=("go",), state=State.CLAIMED, owner=owner, announced_by=owner,
                announced_at=1.5, claimed_at=2.5, updated=7, claims=1,
                history=(HistoryItem(7, 2.5, "claimed", owner, ""),))
    node = SimpleNamespace(tasks=SimpleNamespace(get={"5e1f": task}.get))
    shown: list[bytes] = []

    async def main() -> None:
        app = create_app(node, token="s3cret")  # type: ignore[arg-type]
        fast_get = app.state.fast_get

        def counted(target: bytes, authorization: bytes) -> Any:
            answer = fast_get(target, authorization)
            if answer is not None:
                shown.append(target)
            return answer

        app.state.fast_get = counted
        async with trio.open_nursery() as nursery:
            server = ApiServer(app, "127.0.0.1:0")
            url = await nursery.start(server.run)
            host, port = url.removeprefix("http://").rsplit(":", 1)
            sock = trio.socket.socket()
            await sock.connect((host, int(port)))
            conn, auth = _Conn(sock), b"authorization: Bearer s3cret\r\n"
            with trio.fail_after(20), conn.sock:
                fast = await conn.request(b"/api/v1/tasks/5e1f", auth)
                slow = await conn.request(b"/api/v1/tasks/5e1f?x=1", auth)  # the app's
                assert shown == [b"/api/v1/tasks/5e1f"]
                fast[1].pop(b"date"), slow[1].pop(b"date")
                assert fast == slow and fast[0] == 200
                assert fast[2].decode().startswith('{"id":"5e1f","address":')
                status, _, body = await conn.request(b"/api/v1/tasks/nosuch", auth)
                assert status == 404 and b'"error"' in body  # the app's refusal
                status, _, _ = await conn.request(b"/api/v1/tasks/5e1f")  # no token
                assert status == 401
            assert shown == [b"/api/v1/tasks/5e1f"]
            await server.stop()

    trio.run(main)
    for declined in (b"/api/v1/tasks/5e1f/", b"/api/v1/tasks/5e%31f", b"/api/v1/tasks/5e1f?",
                     b"/api/v1/tasks", b"/api/v1/tasks/", b"/api/v1/tasks/5e1f/claim"):
        assert show_answer(node, declined) is None, declined
