"""The server's fast path for proposals (``_server._OneWriteResponses``, ``FastPost``) over real
sockets on 127.0.0.1: what it takes (a POST of the propose path with a length, the token
right) it answers with the app's bytes, requests in turn on one keep-alive connection; what it
declines (chunks, 100-continue, a body past its bound, a query string, another path, a wrong
token) the app answers as before; task commands and proposals on a real lone node answer
alike on both paths (and tests/consensus/test_cluster.py checks the proposals' refusals)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio

from bzzz_edge.api import ApiServer, create_app
from bzzz_edge.api._server import MAX_FAST_POST_BODY
from bzzz_edge.api._tasks import command_target
from bzzz_edge.cluster import LocalCluster

PATH = b"/api/v1/coordination/propose"


class _Conn:
    """One keep-alive connection; ``request`` returns (status, headers, body)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock, self.have = sock, b""
        self.replace_answer: Any = None  # what the fast path answers with instead, if set

    async def request(self, target: bytes, headers: bytes = b"", body: bytes = b"",
                      method: bytes = b"POST") -> tuple[int, dict[bytes, bytes], bytes]:
        await self.sock.send(method + b" " + target + b" HTTP/1.1\r\nhost: a\r\n" + headers
                             + b"\r\n" + body)
        while True:
            while b"\r\n\r\n" not in self.have:
                self.have += await self._recv()
            head, _, self.have = self.have.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            if not lines[0].startswith(b"HTTP/1.1 1"):  # (100 Continue comes first, headless)
                break
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(fields[b"content-length"])
        while len(self.have) < length:
            self.have += await self._recv()
        content, self.have = self.have[:length], self.have[length:]
        fields.pop(b"date")  # (the second may turn between two answers)
        return int(lines[0].split()[1]), fields, content

    async def _recv(self) -> bytes:
        chunk = await self.sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {self.have!r}")
        return chunk


async def _serve(nursery: trio.Nursery, token: str = "") -> tuple[_Conn, list[bytes]]:
    """A node without a decision log yet (proposals are answered 503 by both paths); returns a
    connection and the targets the fast path answered."""
    app = create_app(SimpleNamespace(consensus=None), token=token)  # type: ignore[arg-type]
    fast_post = app.state.fast_post
    taken: list[bytes] = []

    def counted(target: bytes, authorization: bytes) -> Any:
        answer = conn.replace_answer or fast_post(target, authorization)
        if answer is not None:
            taken.append(target)
        return answer

    app.state.fast_post = counted
    url = await nursery.start(ApiServer(app, "127.0.0.1:0").run)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    await sock.connect((host, int(port)))
    conn = _Conn(sock)
    return conn, taken


def _sized(body: bytes) -> tuple[bytes, bytes]:
    return b"content-length: %d\r\n" % len(body), body


def _chunked(body: bytes) -> tuple[bytes, bytes]:
    return b"transfer-encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def test_the_fast_path_answers_a_sized_propose_with_the_apps_bytes() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            conn, taken = await _serve(nursery)
            body = b'{"data": "x"}'
            fast = await conn.request(PATH, *_sized(body))
            assert taken == [PATH]
            by_app = await conn.request(PATH, *_chunked(body))  # the same connection, in turn
            assert taken == [PATH]
            assert fast == by_app
            status, headers, content = fast
            assert status == 503 and headers[b"content-type"] == b"application/json"
            assert content == b'{"error":"coordination is not running",' \
                              b'"path":"/api/v1/coordination/propose"}'
            again = await conn.request(PATH, *_sized(b""))  # and again: the connection was kept
            assert again == fast and taken == [PATH, PATH]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_what_the_fast_path_declines_the_app_answers() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            conn, taken = await _serve(nursery)
            sized_status = (await conn.request(PATH, *_sized(b"{}")))[0]
            declined = [
                (PATH + b"?x=1", *_sized(b"{}")),
                (PATH, *_chunked(b"{}")),
                (PATH, b"expect: 100-continue\r\ncontent-length: 2\r\n", b"{}"),
                (b"/api/v1/coordination/bench", *_sized(b"{}")),
            ]
            for target, headers, body in declined:
                status, _, content = await conn.request(target, headers, body)
                assert status == sized_status == 503, content  # the app: still no decision log
            assert taken == [PATH]
            # A body past the fast path's bound: the app reads it and answers (the node has no
            # decision log, so without reading it).
            status, _, _ = await conn.request(PATH, b"content-length: %d\r\n"
                                              % (MAX_FAST_POST_BODY + 1), b"")
            assert status == 503 and taken == [PATH]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_the_token_is_checked_before_the_fast_path_takes_a_request() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            conn, taken = await _serve(nursery, token="s3cret")
            status, _, content = await conn.request(PATH, *_sized(b"{}"))
            assert status == 401 and b"bearer token" in content and taken == []
            status, _, content = await conn.request(PATH, b"authorization: Bearer wrong\r\n"
                                                    + _sized(b"{}")[0], b"{}")
            assert status == 401 and taken == []
            status, _, content = await conn.request(PATH, b"authorization: Bearer s3cret\r\n"
                                                    + _sized(b"{}")[0], b"{}")
            assert status == 503 and b"not running" in content and taken == [PATH]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_task_command_targets_the_fast_path_takes() -> None:
    assert command_target(b"/api/v1/tasks") == ("announce", "", "/api/v1/tasks")
    assert command_target(b"/api/v1/tasks/T-1/claim") == ("claim", "T-1",
                                                          "/api/v1/tasks/T-1/claim")
    for declined in (b"/api/v1/tasks/", b"/api/v1/tasks?x=1", b"/api/v1/tasks/T%2D1/claim",
                     b"/api/v1/tasks/T-1/claim/", b"/api/v1/tasks/T-1", b"/api/v1/tasksx",
                     b"/api/v1/tasks/\xc3\xa9/claim", b"/api/v1/tasks/T/claim?y"):
        assert command_target(declined) is None, declined


def test_on_a_lone_node_task_commands_and_proposals_answer_alike_on_both_paths(
        tmp_path: Path, raft_harness: Any) -> None:
    # A body with a length takes the fast path; the same request chunked goes to the app.
    with LocalCluster(tmp_path, 1) as cluster:
        cluster.start()
        node = cluster.nodes[0]
        raft_harness.wait_for_coordinator(cluster, voters=1, timeout=30)
        host, port = node.api.split("//")[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)

        def call(path: str, body: bytes, *, chunked: bool) -> tuple[int, str | None, bytes]:
            if chunked:
                conn.request("POST", path, iter([body]), encode_chunked=True)
            else:
                conn.request("POST", path, body)
            response = conn.getresponse()
            return response.status, response.getheader("content-type"), response.read()

        for path, body, status in [
                ("/api/v1/tasks", b"{not json", 400), ("/api/v1/tasks", b'{"title": 5}', 400),
                ("/api/v1/tasks/nosuch/claim", b"", 404),
                ("/api/v1/tasks/nosuch/dance", b"{}", 404),
                ("/api/v1/tasks/nosuch/complete", b'{"result_b64": "!"}', 400),
                (PATH.decode(), b"[1]", 400)]:
            fast = call(path, body, chunked=False)
            assert fast[0] == status and fast[1] == "application/json", (path, fast)
            assert json.loads(fast[2])["path"] == path
            by_app = call(path, body, chunked=True)
            if b'"index"' in fast[2]:  # (a refused claim is decided in the log: the next index)
                assert json.loads(by_app[2])["index"] > json.loads(fast[2])["index"]
                fast, by_app = ((*fast[:2], _indexless(fast[2])),
                                (*by_app[:2], _indexless(by_app[2])))
            assert by_app == fast, path
        announced = [call("/api/v1/tasks", b'{"title": "t%d"}' % n, chunked=chunked)
                     for n, chunked in enumerate((False, True))]
        assert [a[0] for a in announced] == [201, 201]
        ids = [json.loads(a[2])["id"] for a in announced]
        for task_id, chunked in zip(ids, (True, False), strict=True):
            status, _, raw = call(f"/api/v1/tasks/{task_id}/claim", b"", chunked=chunked)
            won = json.loads(raw)
            assert status == 200 and won["state"] == "claimed" and won["owner"], won
        conn.close()


def _indexless(raw: bytes) -> dict[str, Any]:
    answer = json.loads(raw)
    del answer["index"]
    return answer


def test_an_error_in_a_fast_answer_is_a_500_and_the_server_goes_on() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            conn, _ = await _serve(nursery)
            expected = await conn.request(PATH, *_sized(b"{}"))

            async def broken(body: bytes) -> Any:
                raise KeyError("a bug")

            conn.replace_answer = broken
            status, headers, content = await conn.request(PATH, *_sized(b"{}"))
            assert (status, content) == (500, b"Internal Server Error")
            assert headers[b"content-type"] == b"text/plain; charset=utf-8"
            conn.replace_answer = None
            assert await conn.request(PATH, *_sized(b"{}")) == expected  # the same connection
            nursery.cancel_scope.cancel()

    trio.run(main)
