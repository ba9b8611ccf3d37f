"""The server's own event streams (``_server._Streaming``, ``FastStream``, ``_topics._Events``)
over real sockets on 127.0.0.1: a plain GET of a topic's stream is written by the server with
the same head and the same bytes the app's route sends (the route still answers what the fast
path declines: a query string, a wrong token); a client that goes closes its subscription;
a stopping server ends the stream; a quiet stream carries keep-alive comments."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import h11
import pytest
import trio

from bzzz_edge.api import ApiServer, _topics, create_app
from bzzz_edge.api._topics import events_topic
from bzzz_edge.gossip._local import LocalTopics
from bzzz_edge.gossip.delivery import Delivery, Published, Subscription

TOPIC = "bzzz/coordination/v1"


class _PubSub:
    """The node's pub/sub as the endpoints use it, with the node's own topic bookkeeping."""

    def __init__(self) -> None:
        self.left = trio.Event()  # set when the last subscription of a topic closes
        self.topics = LocalTopics(max_topics=8, subscriber_buffer=64,
                                  on_enter=lambda topic: None,
                                  on_left=lambda topic: self.left.set())
        self.seq = 0

    def subscribe(self, topic: str, buffer: int | None = None) -> Subscription:
        return self.topics.subscribe(topic, buffer)

    def publish(self, topic: str, data: bytes) -> Published:
        self.seq += 1
        delivery = Delivery(topic, bytes(range(32)), self.seq, 1_700_000_000_000, 1, data)
        for subscription in self.topics.subscribers(topic):
            subscription.put(delivery)
        return Published(topic, delivery.origin, self.seq)

    def topic_stats(self) -> list[dict[str, Any]]:
        return []


class _Stream:
    """One event stream read through h11: the head, then the body as it comes."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)
        self.body = b""
        self.ended = False

    @classmethod
    async def open(cls, url: str, target: str, token: str = "") -> tuple[_Stream, h11.Response]:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        sock = trio.socket.socket()
        await sock.connect((host, int(port)))
        stream = cls(sock)
        headers = [("host", "a"), ("accept", "text/event-stream")]
        if token:
            headers.append(("authorization", f"Bearer {token}"))
        await sock.send(stream.conn.send(h11.Request(method="GET", target=target,
                                                     headers=headers))
                        + (stream.conn.send(h11.EndOfMessage()) or b""))
        while True:
            event = await stream._next()
            if isinstance(event, h11.Response):
                return stream, event

    async def _next(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.sock.recv(65536))

    async def until(self, text: bytes) -> bytes:
        """The body up to the end of ``text``'s first occurrence (consumed)."""
        while text not in self.body:
            event = await self._next()
            if isinstance(event, h11.Data):
                self.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                raise AssertionError(f"the stream ended before {text!r}: {self.body!r}")
        head, _, self.body = self.body.partition(text)
        return head + text

    async def end(self) -> bytes:
        """The rest of the body, once the response ended."""
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                self.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return self.body


def _head(response: h11.Response) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in response.headers if name != b"date"]


async def _serve(nursery: trio.Nursery, token: str = "") -> tuple[str, _PubSub, ApiServer,
                                                                   list[bytes]]:
    pubsub = _PubSub()
    app = create_app(SimpleNamespace(gossip=pubsub), token=token)  # type: ignore[arg-type]
    fast_stream = app.state.fast_stream
    taken: list[bytes] = []

    def counted(target: bytes, authorization: bytes) -> Any:
        events = fast_stream(target, authorization)
        if events is not None:
            taken.append(target)
        return events

    app.state.fast_stream = counted
    server = ApiServer(app, "127.0.0.1:0")
    url = await nursery.start(server.run)
    return url, pubsub, server, taken


def test_the_server_streams_the_apps_bytes() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url, pubsub, _, taken = await _serve(nursery)
            fast, fast_head = await _Stream.open(url, "/api/v1/topics/bzzz%2Fcoordination%2Fv1"
                                                      "/events")
            by_app, app_head = await _Stream.open(url, f"/api/v1/topics/{TOPIC}/events?x=1")
            assert taken == [b"/api/v1/topics/bzzz%2Fcoordination%2Fv1/events"]
            assert fast_head.status_code == app_head.status_code == 200
            assert _head(fast_head) == _head(app_head)
            assert dict(_head(fast_head))[b"content-type"] == b"text/event-stream; charset=utf-8"
            subscribed = f": subscribed to {TOPIC}\n\n".encode()
            assert await fast.until(subscribed) == await by_app.until(subscribed) == subscribed
            for data in (b'{"type": "task_claimed"}', "caf\u00e9".encode(), b"\xff\x00"):
                pubsub.publish(TOPIC, data)
            pubsub.publish("other/topic", b"not for these streams")
            last = pubsub.publish(TOPIC, b"last")
            fast_body = await fast.until(b"data_b64\": \"bGFzdA==\"")
            app_body = await by_app.until(b"data_b64\": \"bGFzdA==\"")
            assert fast_body == app_body
            assert fast_body.count(b"event: message\n") == 4
            assert b"caf\\u00e9" in fast_body and b'"data": null' in fast_body
            assert f"id: {last.message_id}\n".encode() in fast_body
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_client_that_goes_closes_its_subscription() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url, pubsub, _, taken = await _serve(nursery)
            stream, _ = await _Stream.open(url, f"/api/v1/topics/{TOPIC}/events")
            await stream.until(b"\n\n")
            assert len(pubsub.topics.subscribers(TOPIC)) == 1 and taken
            stream.sock.close()
            with trio.fail_after(10):
                await pubsub.left.wait()
            assert pubsub.topics.subscribers(TOPIC) == []
            pubsub.publish(TOPIC, b"to nobody")  # no stream left to write it
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_stopping_server_ends_the_stream() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url, pubsub, server, _ = await _serve(nursery)
            stream, _ = await _Stream.open(url, f"/api/v1/topics/{TOPIC}/events")
            await stream.until(b"\n\n")
            pubsub.publish(TOPIC, b"before the stop")
            await stream.until(b"before the stop")
            await stream.until(b"\n\n")  # (the rest of its event)
            with trio.fail_after(10):
                await server.stop()
                assert await stream.end() == b""  # the response ended, nothing cut short
            assert pubsub.topics.subscribers(TOPIC) == []

    trio.run(main)


def test_the_token_is_checked_before_the_server_streams() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url, _, _, taken = await _serve(nursery, token="s3cret")
            target = f"/api/v1/topics/{TOPIC}/events"
            _, refused = await _Stream.open(url, target, token="wrong")
            assert refused.status_code == 401 and taken == []
            stream, response = await _Stream.open(url, target, token="s3cret")
            assert response.status_code == 200 and taken == [target.encode()]
            assert await stream.until(b"\n\n") == f": subscribed to {TOPIC}\n\n".encode()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_quiet_stream_carries_keepalives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_topics, "_KEEPALIVE_S", 0.01)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url, pubsub, _, _ = await _serve(nursery)
            stream, _ = await _Stream.open(url, f"/api/v1/topics/{TOPIC}/events")
            await stream.until(b": keepalive\n\n")
            pubsub.publish(TOPIC, b"after a keepalive")
            await stream.until(b"after a keepalive")
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_event_stream_targets_the_server_takes() -> None:
    assert events_topic(b"/api/v1/topics/a/events") == "a"
    assert events_topic(b"/api/v1/topics/bzzz%2Fcoordination%2Fv1/events") == TOPIC
    assert events_topic(b"/api/v1/topics/bzzz/coordination/v1/events") == TOPIC
    assert events_topic(b"/api/v1/topics//events") == ""  # (refused by check_topic)
    for declined in (b"/api/v1/topics/events", b"/api/v1/topics/a/events?x=1",
                     b"/api/v1/topics/a/events/", b"/api/v1/topics", b"/api/v1/topicsa/events",
                     b"/api/v1/topics/\xc3\xa9/events"):
        assert events_topic(declined) is None, declined
