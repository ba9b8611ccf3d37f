"""An event stream's ``match`` filters (``GET /api/v1/topics/{topic}/events?match=...``): only
the deliveries whose data holds one of them are queued and written; bad filters are refused
with 400; the benchmark's reader asks for what it wants. Against a real API server on
127.0.0.1 with the node's own subscription type."""

from __future__ import annotations

import socket
import sys

import trio

from bzzz_edge.api._topics import MAX_MATCH_BYTES, MAX_MATCHES
from bzzz_edge.bench._http import _events_target, event_stream
from bzzz_edge.gossip.delivery import Delivery, Subscription

TOPIC = "bzzz/coordination/v1"


_local = sys.modules["_bzzz_test_harness_local_pubsub"]  # tests/_harness/local_pubsub.py
_PubSub = _local.LocalPubSub


def test_a_subscription_with_matches_queues_only_what_holds_one() -> None:
    sub = Subscription("t", 8, lambda s: None, matching=(b"claimed", b"completed"))
    for seq, data in enumerate([b'{"type": "task_announced"}', b'{"type": "task_claimed"}',
                                b"", b'{"type": "task_completed"}', b"claimed"]):
        assert sub.put(Delivery("t", bytes(32), seq, 0, 0, data))
    assert [sub.receive_nowait().seq for _ in range(len(sub))] == [1, 3, 4]
    assert sub.received == 3 and sub.dropped == 0  # the others were never handed to it
    plain = Subscription("t", 8, lambda s: None)
    assert plain.put(Delivery("t", bytes(32), 0, 0, 0, b"anything")) and len(plain) == 1


def test_the_benchmark_asks_for_what_it_wants() -> None:
    assert _events_target(TOPIC, ()) == f"/api/v1/topics/{TOPIC}/events"
    assert _events_target(TOPIC, (b"task_claimed", b"a b&c")) == \
        f"/api/v1/topics/{TOPIC}/events?match=task_claimed&match=a%20b%26c"


def _get(url: str, target: str) -> bytes:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_the_stream_writes_only_matching_deliveries_and_refuses_bad_filters() -> None:
    async def main() -> None:
        pubsub = _PubSub()
        async with _local.served(pubsub) as (url, server):
            with trio.fail_after(20):
                for query, why in [("&".join(["match=x"] * (MAX_MATCHES + 1)), "at most"),
                                   ("match=", "1 to"),
                                   (f"match={'y' * (MAX_MATCH_BYTES + 1)}", "1 to")]:
                    answer = await trio.to_thread.run_sync(
                        _get, url, f"/api/v1/topics/{TOPIC}/events?{query}")
                    assert answer.startswith(b"HTTP/1.1 400") and why.encode() in answer
                got = event_stream(url, TOPIC, "k", wanted=(b"task_claimed", b"task_completed"))
                assert await got.__anext__() == {}
                [sub] = pubsub.topics.subscribers(TOPIC)
                pubsub.put(TOPIC, 1, b'{"type": "task_announced"}')
                pubsub.put(TOPIC, 2, b'{"type": "task_claimed", "id": "t"}')
                pubsub.put(TOPIC, 3, b'{"type": "task_completed", "id": "t"}')
                assert (await got.__anext__())["seq"] == 2
                assert (await got.__anext__())["seq"] == 3
                assert sub.received == 2  # the announce never reached the stream's queue
                await got.aclose()
                await server.stop()

    trio.run(main)

