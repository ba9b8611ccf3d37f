"""The benchmark's event stream reader (``bench._http``): the chunk framing taken off however
the bytes arrive, events handed out whole, bad framing and the stream's end refused; and the
whole reader against a real node API server on 127.0.0.1."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import trio

from bzzz_edge.api import ApiServer, create_app
from bzzz_edge.bench._http import ApiConnection, _Answer, _SseBody, event_stream
from bzzz_edge.errors import BzzzError

EVENTS = [b": subscribed to t", b"id: a:1\nevent: message\ndata: {\"x\": 1}",
          b"id: a:2\nevent: message\ndata: " + b"y" * 300, b": keepalive"]


def _framed(chunks: list[bytes]) -> bytes:
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) if i == 1 else
                    b"%x\r\n%s\r\n" % (len(c), c) for i, c in enumerate(chunks))


@pytest.mark.parametrize("piece", [1, 2, 7, 64, 10_000])
def test_events_come_out_whole_however_the_bytes_arrive(piece: int) -> None:
    text = b"".join(e + b"\n\n" for e in EVENTS)
    # Chunks that cut events anywhere, as a server may send them.
    chunks = [text[:5], text[5:40], text[40:41], text[41:]]
    for chunked, raw in ((True, _framed(chunks)), (False, text)):
        body, out = _SseBody(chunked, "closed"), []
        for at in range(0, len(raw), piece):
            out += body.feed(raw[at:at + piece])
        assert out == EVENTS


def test_the_last_chunk_and_bad_framing_are_refused() -> None:
    with pytest.raises(BzzzError, match="closed"):
        _SseBody(True, "closed").feed(_framed([b": a\n\n"]) + b"0\r\n\r\n")
    with pytest.raises(BzzzError, match="bad chunk framing"):
        _SseBody(True, "closed").feed(b"zz\r\nabc\r\n")


_local = sys.modules["_bzzz_test_harness_local_pubsub"]  # tests/_harness/local_pubsub.py
_PubSub = _local.LocalPubSub


def test_the_reader_against_a_real_server() -> None:
    async def main() -> None:
        pubsub = _PubSub()
        async with _local.served(pubsub) as (url, server):
            with trio.fail_after(20):
                got = event_stream(url, "bzzz/coordination/v1", "k", wanted=(b"task_claimed",))
                assert await got.__anext__() == {}
                pubsub.put("bzzz/coordination/v1", 1, b'{"type": "task_announced"}')
                pubsub.put("bzzz/coordination/v1", 2, b'{"type": "task_claimed", "id": "t"}')
                delivery = await got.__anext__()  # (the announce: not wanted, not parsed)
                assert delivery["seq"] == 2 and delivery["data"] == \
                    '{"type": "task_claimed", "id": "t"}'
                await server.stop()
                with pytest.raises(BzzzError, match="closed the event stream"):
                    await got.__anext__()
                await got.aclose()
                refused = event_stream(url.replace(url.rsplit(":", 1)[1], "1"), "t")
                with pytest.raises(BzzzError, match="cannot reach"):
                    await refused.__anext__()

    trio.run(main)


def test_a_refused_stream_says_its_status() -> None:
    async def main() -> None:
        app = create_app(SimpleNamespace(gossip=_PubSub()), token="k")  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            url = await nursery.start(ApiServer(app, "127.0.0.1:0").run)
            with trio.fail_after(20), pytest.raises(BzzzError, match="HTTP 401"):
                await event_stream(url, "t", "wrong").__anext__()
            nursery.cancel_scope.cancel()

    trio.run(main)


def _answer(raw: bytes, piece: int) -> _Answer:
    answer = _Answer("node")
    for at in range(0, len(raw), piece):
        if answer.feed(raw[at:at + piece]):
            return answer
    assert answer.feed(b""), "the answer never completed"
    return answer


@pytest.mark.parametrize("piece", [1, 3, 10_000])
def test_answers_are_read_by_length_chunks_or_to_the_end(piece: int) -> None:
    sized = _answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Length: 7"
                    b"\r\nContent-Type: application/json\r\n\r\n{\"a\":1}", piece)
    assert (sized.status, sized.body, sized.close) == (409, b'{"a":1}', False)
    chunked = _answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                      + _framed([b'{"a"', b':\n\n2}']) + b"0\r\n\r\n", piece)
    assert (chunked.status, chunked.body, chunked.close) == (200, b'{"a":\n\n2}', True)
    to_end = _answer(b"HTTP/1.0 200 OK\r\n\r\n[1, 2]", piece)
    assert (to_end.status, to_end.body, to_end.close) == (200, b"[1, 2]", True)
    closing = _answer(b"HTTP/1.1 503 x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
                      piece)
    assert (closing.status, closing.body, closing.close) == (503, b"{}", True)


def test_malformed_or_cut_answers_are_refused() -> None:
    for raw, says in ((b"SSH-2.0-x\r\n\r\n", "not an HTTP answer"),
                      (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "Content-Length"),
                      (b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}", "closed"),
                      (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nq\r\n",
                       "chunk framing")):
        with pytest.raises(BzzzError, match=says):
            answer = _Answer("node")
            answer.feed(raw)
            answer.feed(b"")


def test_the_connection_calls_a_real_server_and_reconnects() -> None:
    async def main() -> None:
        node = SimpleNamespace(gossip=None, info=lambda: {"node_id": "N1"})
        app = create_app(node, token="k")  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            url = await nursery.start(ApiServer(app, "127.0.0.1:0").run)
            conn = ApiConnection(url, token="k")
            with trio.fail_after(20):
                for _ in range(3):  # on one kept-alive connection
                    assert await conn.call("GET", "/api/v1/node") == (200, {"node_id": "N1"})
                status, answer = await conn.call("POST", "/api/v1/topics/t/messages",
                                                 {"data": "x"})
                assert status == 503 and "not running" in answer["error"]
                assert conn._stream is not None
                await conn._stream.aclose()  # as if the server had closed it while idle
                assert await conn.call("GET", "/api/v1/node") == (200, {"node_id": "N1"})
                conn.token = "wrong"
                assert (await conn.call("GET", "/api/v1/node"))[0] == 401
                with pytest.raises(BzzzError, match="cannot send"):
                    await conn.call("GET", "/api/v1/node\r\nX: y")
                await conn.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
